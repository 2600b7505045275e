"""The vocabulary every layer shares: errors, records, configs, the label spec, prompts, files, what people see."""
