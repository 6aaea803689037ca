"""The acceptance cloud: a real OpenStack on this machine, upgraded by Rollgate (README)."""
