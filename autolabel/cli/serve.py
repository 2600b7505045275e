"""`autolabel serve`: a Label Studio ML backend that learns from every annotation."""

from __future__ import annotations

import ipaddress
from typing import Any

import click

from autolabel.cli.app import handle_errors, main


@main.command("serve")
@click.argument("spec", metavar="SPEC", type=click.Path(dir_okay=False))
@click.option("--model", "-m", default=None,
              help="Model id or local folder (default: the spec's `model:`, else openai/clip-vit-base-patch32).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (another than 127.0.0.1 lets other machines in: no authentication).")
@click.option("--port", type=click.IntRange(0, 65535), default=9090, show_default=True, help="TCP port.")
@click.option("--cache-dir", type=click.Path(), envvar="AUTOLABEL_CACHE_DIR", default=None,
              help="Embedding cache folder; the projects' annotations are kept in its serve/ folder.  "
                   "[default: ~/.cache/autolabel]")
@click.option("--examples", "examples", multiple=True, type=click.Path(),
              help="A table of reviewed images (as `run --examples`) every project starts from; repeatable.")
@click.option("--examples-column", default=None, help="The label column of --examples (default: reviewed_label, "
                                                       "else label).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps.")
@click.option("--precision", type=click.Choice(["auto", "fp32", "fp16", "bf16"]), default="auto", show_default=True,
              help="Model precision.")
@click.option("--verbose", "-v", is_flag=True, help="Log every request, not only refusals and what was learnt.")
@handle_errors
def serve(spec: str, **options: Any) -> None:
    """Serve SPEC's classes to Label Studio as an ML backend that learns from every annotation.

    Label Studio asks it for predictions (one choice of the project's Choices per task, which must be the
    spec's classes) and sends every annotation through a webhook; the next predictions learn from them (the
    training-free adapter of `run --examples`) and carry a new model_version, so Label Studio fetches them
    again. A prediction's `score` is its review priority: sort the Data Manager by prediction score, ascending,
    and label from the top (the model's confidence is the score of the choice itself). Images are read from
    LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT when set, else through the server (LABEL_STUDIO_URL,
    LABEL_STUDIO_API_KEY), and embedded once (the cache).

    \b
    Connect it (Label Studio started with ML_BLOCK_LOCAL_IP=false SSRF_PROTECTION_ENABLED=false):
      autolabel serve labels.yaml --port 9090
      Project → Settings → Model → Connect Model → URL http://127.0.0.1:9090
      Data Manager → select all → Retrieve Predictions; sort by Prediction score ascending; annotate
    """
    from autolabel.serve.server import Server

    host, port = options["host"], options["port"]
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    console = _log(options["verbose"])
    try:
        server = Server(None, host, port, console)  # type: ignore[arg-type]  # listen first: a busy port fails now
    except OSError as exc:
        from autolabel.core.errors import UsageError

        raise UsageError(f"--host {host} --port {port}: cannot listen there ({exc.strerror or exc}); pass another "
                         "--port or --host") from None
    try:
        server.backend = _backend(spec, options, console)
        if address is None or not address.is_loopback:
            console(f"warning: listening on {host}: anyone who reaches this address can use the backend (there is "
                    "no authentication); 127.0.0.1 keeps it on this machine")
        console(f"autolabel serve: {server.backend.spec.source} with {server.backend.model.name} at "
                f"http://{host}:{server.server_address[1]} (Ctrl-C stops)")
        server.serve_forever()
    except KeyboardInterrupt:
        console("autolabel serve: stopped")
    finally:
        server.server_close()


def _backend(spec_path: str, options: dict[str, Any], console: Any) -> Any:
    """Spec, examples and cache checked before torch is imported (an error exit with torch's and pyarrow's
    thread pools both started could abort in their teardown: exit 134); then the model and the backend."""
    from autolabel.core.config import CacheConfig, ModelConfig
    from autolabel.core.spec import load_spec
    from autolabel.embedding.session import Session
    from autolabel.learn.examples import collect

    spec = load_spec(spec_path)
    warn = lambda message: console(f"warning: {message}")  # noqa: E731
    seed = collect(spec, options["examples"], options["examples_column"], warn)
    session = Session.open(ModelConfig(options["model"], options["device"], options["precision"]),
                           CacheConfig(options["cache_dir"]), spec_model=spec.model_location(), warn=warn,
                           on_load=lambda name: console(f"loading model {name}"))

    from autolabel.serve.backend import Backend

    session.model.get()  # now, not in Label Studio's first request
    state = session.cache.folder / "serve" if session.cache is not None else None  # the annotations, by the cache
    return Backend(spec, session.model, session.cache, state, seed, warn, console)


def _log(verbose: bool) -> Any:
    """One line per event on stderr; requests only with --verbose."""
    def log(message: str, verbose_only: bool = False, **_: Any) -> None:
        if verbose or not verbose_only:
            click.echo(message, err=True)

    return log
