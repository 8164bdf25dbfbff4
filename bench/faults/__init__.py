"""The fault suite (issue 15): `python -m bench.faults`. One module per fault family (crashes, partition,
hostile, spoof) on one shared fleet (fleet.py); counting.py counts and judges."""
