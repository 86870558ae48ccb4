"""velesio's Grafana dashboards: the overview of velesio itself, and boards for what it runs on
(Redis, the machines, the GPUs)."""

from __future__ import annotations

from grafana_foundation_sdk.models.dashboard import Dashboard

from .panels import RATE, dashboard, graph, label_variable, percentiles, single

MODEL = 'model=~"$model"'


def overview() -> Dashboard:
    requests = "velesio_api_requests_total"
    traffic = [
        graph("Requests by dialect", "reqps", (f"sum by (dialect) (rate({requests}[{RATE}]))", "{{dialect}}"),
              description="Every answered request, by the dialect its client speaks.", stacked=True),
        graph("Client and server errors", "reqps",
              (f'sum by (status) (rate({requests}{{status=~"[45].."}}[{RATE}]))', "{{status}}"),
              description="4xx: the client's mistake (or a wrong token); 503: busy or no worker; 5xx: ours."),
        single("Share of 5xx", "percentunit",
               (f'(sum(rate({requests}{{status=~"5.."}}[{RATE}])) or vector(0)) / sum(rate({requests}[{RATE}]))', "")),
        single("Streams in flight", "short", ("sum(velesio_api_streams_in_flight)", "")),
        graph("Auth failures", "reqps", (f"sum by (dialect) (rate(velesio_api_auth_failures_total[{RATE}]))",
                                         "{{dialect}}"), width=8),
    ]  # fmt: skip
    latency = [
        graph("Request duration (whole answers)", "s",
              *percentiles('velesio_api_request_duration_seconds_bucket{stream="false"}'),
              description="From arrival to the last byte, for requests answered in one piece."),
        graph("Time to first token (streams)", "s", *percentiles("velesio_api_time_to_first_token_seconds_bucket"),
              description="From arrival to the first chunk of output: queue wait, prompt processing, one token."),
        graph("Stream duration", "s",
              *percentiles('velesio_api_request_duration_seconds_bucket{stream="true"}', quantiles=(0.5, 0.95))),
    ]  # fmt: skip
    queue = [
        graph("Waiting jobs", "short", (f"sum by (model, kind) (velesio_queue_waiting_jobs{{{MODEL}}})",
                                        "{{model}} {{kind}}"), stacked=True),
        graph("Oldest waiting job", "s", (f"max by (model, kind) (velesio_queue_oldest_job_age_seconds{{{MODEL}}})",
                                          "{{model}} {{kind}}")),
        graph("Queue wait", "s", *percentiles(f"velesio_queue_wait_seconds_bucket{{{MODEL}}}", quantiles=(0.5, 0.95)),
              description="From the API queueing a job to a worker starting it."),
        graph("Refused, cancelled, expired", "ops",
              (f"sum(rate(velesio_queue_rejected_jobs_total{{{MODEL}}}[{RATE}]))", "refused (queue full)"),
              (f"sum(rate(velesio_queue_cancelled_jobs_total{{{MODEL}}}[{RATE}]))", "cancelled (client left)"),
              (f"sum(rate(velesio_queue_expired_jobs_total{{{MODEL}}}[{RATE}]))", "expired (no worker in time)"),
              width=12),
        graph("Jobs by outcome", "ops", (f"sum by (outcome) (rate(velesio_worker_jobs_total[{RATE}]))", "{{outcome}}"),
              width=12, stacked=True),
    ]  # fmt: skip
    generation = [
        graph("Tokens per second", "short",
              (f"sum by (model) (rate(velesio_worker_generated_tokens_total{{{MODEL}}}[{RATE}]))",
               "{{model}} generated"),
              (f"sum by (model) (rate(velesio_worker_prompt_tokens_total{{{MODEL}}}[{RATE}]))", "{{model}} prompt"),
              description="All workers together."),
        graph("Decoding speed per generation", "short",
              *percentiles(f"velesio_worker_generation_tokens_per_second_bucket{{{MODEL}}}", by="model",
                           quantiles=(0.05, 0.5)),
              description="Each generation's own tokens per second (p5 is the slowest 5%)."),
        graph("Job run time", "s", *percentiles(f"velesio_job_run_seconds_bucket{{{MODEL}}}", by="kind",
                                                quantiles=(0.5, 0.95))),
    ]  # fmt: skip
    images = [
        graph("Images per minute", "short",
              (f"60 * sum by (kind) (rate(velesio_worker_images_total[{RATE}]))", "{{kind}}"),
              description="Images the workers answered with (a batch of four is four).", stacked=True),
        graph("Diffusion speed", "short",
              *percentiles("velesio_worker_diffusion_steps_per_second_bucket", by="checkpoint", quantiles=(0.05, 0.5)),
              description="Denoising steps per second of each image job, by checkpoint (p5 is the slowest 5%)."),
        graph("Image job run time", "s",
              *percentiles('velesio_job_run_seconds_bucket{kind=~"txt2img|img2img"}', by="kind", quantiles=(0.5, 0.95)),
              description="From a worker starting an image job to its answer: every step, batch and PNG."),
    ]  # fmt: skip
    keys = [
        graph("Jobs by API key", "reqps",
              (f'sum by (key) (rate(velesio_api_key_requests_total{{outcome="admitted"}}[{RATE}]))', "{{key}}"),
              description="Jobs admitted per key name; the keys a key minted count under its name.", width=6,
              stacked=True),
        graph("Refused by key", "reqps",
              (f'sum by (key, outcome) (rate(velesio_api_key_requests_total{{outcome!="admitted"}}[{RATE}]))',
               "{{key}} {{outcome}}"),
              description="429 rate_limited or quota_exceeded, 403 forbidden, 401 revoked: who hits limits.",
              width=6),
        graph("Tokens and images by key", "short",
              (f"60 * sum by (key) (rate(velesio_api_key_tokens_total[{RATE}]))", "{{key}} tokens"),
              (f"60 * sum by (key) (rate(velesio_api_key_images_total[{RATE}]))", "{{key}} images"),
              description="Per minute: tokens charged to each key (prompt and generated), images it asked for.",
              width=6),
        graph("Jobs in flight by key", "short", ("sum by (key) (velesio_api_key_jobs_in_flight)", "{{key}}"),
              description="Concurrency leases held (keys with a parallel limit).", width=6),
    ]  # fmt: skip
    workers = [
        single("Live workers", "short", (f"sum by (model) (velesio_workers{{{MODEL}}})", "{{model}}")),
        single("Busy slots", "short", ("sum(velesio_worker_busy_slots)", "busy"), ("sum(velesio_worker_slots)", "of")),
        single("Redis reachable", "bool_yes_no", ("min(velesio_redis_up)", "")),
        single("Backends up", "short", ("sum(velesio_worker_backend_up)", "up"),
               ("count(velesio_worker_backend_up)", "of")),
        graph("Backend restarts (1 h)", "short",
              ("sum by (instance, backend) (increase(velesio_worker_backend_restarts_total[1h]))",
               "{{instance}} {{backend}}")),
        graph("Slot use", "percentunit",
              ("sum by (instance) (velesio_worker_busy_slots) / sum by (instance) (velesio_worker_slots)",
               "{{instance}}"), width=8),
        graph("Heartbeat age", "s", ("time() - velesio_worker_heartbeat_timestamp_seconds", "{{instance}}"), width=8),
    ]  # fmt: skip
    return dashboard(
        "velesio-overview",
        "velesio",
        "velesio at a glance: traffic, latency, the queue, generation speed, images and the workers.",
        [
            ("Traffic", traffic),
            ("Latency", latency),
            ("Queue", queue),
            ("Generation", generation),
            ("Images", images),
            ("API keys", keys),
            ("Workers", workers),
        ],
        variables=[label_variable("model", "model", "velesio_workers")],
    )


def redis() -> Dashboard:
    return dashboard(
        "velesio-redis",
        "velesio / Redis",
        "The Redis that carries velesio's queues and job events, from redis_exporter.",
        [
            ("Redis", [
                single("Up", "bool_yes_no", ("min(redis_up)", "")),
                single("Clients", "short", ("sum(redis_connected_clients)", "")),
                single("Blocked clients", "short", ("sum(redis_blocked_clients)", ""),
                       description="Workers and API processes blocked on their queues and job streams."),
                single("Keys", "short", ("sum(redis_db_keys)", "")),
                graph("Commands per second", "ops", (f"sum(rate(redis_commands_processed_total[{RATE}]))", "commands"),
                      width=12),
                graph("Memory", "bytes", ("sum(redis_memory_used_bytes)", "used"),
                      ("sum(redis_memory_max_bytes)", "maxmemory (0 = none)"), width=12),
                graph("Network", "Bps", (f"sum(rate(redis_net_input_bytes_total[{RATE}]))", "in"),
                      (f"sum(rate(redis_net_output_bytes_total[{RATE}]))", "out"), width=12),
                graph("Keys by database", "short", ("sum by (db) (redis_db_keys)", "{{db}}"), width=12),
            ]),
        ],
    )  # fmt: skip


def node() -> Dashboard:
    instance = 'instance=~"$instance"'
    network = f'device!="lo",{instance}'
    return dashboard(
        "velesio-node",
        "velesio / Machines",
        "The machines velesio runs on, from node_exporter.",
        [
            ("Machines", [
                graph("CPU busy", "percentunit",
                      (f'1 - avg by (instance) (rate(node_cpu_seconds_total{{mode="idle",{instance}}}[{RATE}]))',
                       "{{instance}}")),
                graph("Load (1 m)", "short", (f"node_load1{{{instance}}}", "{{instance}}")),
                graph("Memory available", "bytes", (f"node_memory_MemAvailable_bytes{{{instance}}}", "{{instance}}")),
                graph("Disk space free", "percentunit",
                      (f'min by (instance) (node_filesystem_avail_bytes{{fstype!~"tmpfs|overlay",{instance}}}'
                       f' / node_filesystem_size_bytes{{fstype!~"tmpfs|overlay",{instance}}})', "{{instance}}"),
                      description="The fullest filesystem of each machine (models are large)."),
                graph("Network", "Bps",
                      (f"sum by (instance) (rate(node_network_receive_bytes_total{{{network}}}[{RATE}]))",
                       "{{instance}} in"),
                      (f"sum by (instance) (rate(node_network_transmit_bytes_total{{{network}}}[{RATE}]))",
                       "{{instance}} out")),
                graph("Disk busy", "percentunit",
                      (f"max by (instance) (rate(node_disk_io_time_seconds_total{{{instance}}}[{RATE}]))",
                       "{{instance}}")),
            ]),
        ],
        variables=[label_variable("instance", "instance", "node_uname_info")],
    )  # fmt: skip


def gpu() -> Dashboard:
    gpus = 'Hostname=~"$host"'
    legend = "{{Hostname}} GPU {{gpu}}"
    return dashboard(
        "velesio-gpu",
        "velesio / GPUs",
        "The workers' NVIDIA GPUs, from NVIDIA's dcgm-exporter.",
        [
            ("GPUs", [
                graph("Utilization", "percent", (f"DCGM_FI_DEV_GPU_UTIL{{{gpus}}}", legend)),
                graph("Memory used", "decmbytes", (f"DCGM_FI_DEV_FB_USED{{{gpus}}}", legend),
                      description="A model that no longer fits makes llama-server restart: see the overview."),
                graph("Memory free", "decmbytes", (f"DCGM_FI_DEV_FB_FREE{{{gpus}}}", legend)),
                graph("Temperature", "celsius", (f"DCGM_FI_DEV_GPU_TEMP{{{gpus}}}", legend)),
                graph("Power", "watt", (f"DCGM_FI_DEV_POWER_USAGE{{{gpus}}}", legend)),
                graph("SM clock", "hertz", (f"DCGM_FI_DEV_SM_CLOCK{{{gpus}}} * 1e6", legend)),
            ]),
        ],
        variables=[label_variable("host", "Hostname", "DCGM_FI_DEV_GPU_UTIL")],
    )  # fmt: skip


DASHBOARDS = {"velesio-overview": overview, "velesio-redis": redis, "velesio-node": node, "velesio-gpu": gpu}
