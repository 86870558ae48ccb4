"""The APIs velesio speaks. Each dialect is a request schema plus small pure encoders."""
