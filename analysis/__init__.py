"""The studies that named scenarios run (installed as flowsim.studies)."""
