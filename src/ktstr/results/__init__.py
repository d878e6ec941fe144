"""Run records: building, storing and showing them."""
