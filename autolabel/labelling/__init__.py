"""The run side: plan, stages, engines and sinks of `autolabel run`."""
