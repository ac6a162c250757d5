"""The demo's own room: the synthetic corpus of all seven tasks (corpus), its datasets as configs list them
(specs), and its held-out requests and report (report)."""
