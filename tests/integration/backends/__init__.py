"""The shared backends for real (Postgres, Redis, Garage, Knot): bootstrap, doctor, backup."""
