"""autolabel test suite."""
