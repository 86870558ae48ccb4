"""velesio's worker: runs queued jobs on llama-server, on this machine or any that reaches Redis."""
