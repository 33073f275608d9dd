"""Admission control: what a key may do (policy) and whether this request may run now (limits)."""
