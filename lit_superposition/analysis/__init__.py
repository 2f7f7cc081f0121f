"""Pure analysis: functions on tensors and files, no Lightning."""
