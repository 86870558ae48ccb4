from __future__ import annotations

import pytest

from velesio_core.settings import Settings, SettingsError


def test_defaults_are_the_seeds():
    settings = Settings.from_env({})
    assert settings.redis_url == "redis://localhost:6379/0"
    assert settings.run_llamacpp and not settings.run_ollama and not settings.run_sd and settings.api
    assert settings.api_port == 8000 and settings.standalone_llm_port == 1337
    assert str(settings.model_path) == "models/text/model.gguf"
    assert settings.llm_backend == "llamacpp"


def test_tokens_are_a_comma_list_with_blanks_dropped():
    assert Settings.from_env({"API_TOKENS": " a, b ,,c "}).api_tokens == ("a", "b", "c")


def test_redis_host_and_password_build_a_url_with_the_password_quoted():
    env = {"REDIS_HOST": "queue.internal", "REDIS_PASS": "p@ss:w/rd"}
    assert Settings.from_env(env).redis_url == "redis://:p%40ss%3Aw%2Frd@queue.internal:6379/0"


def test_redis_url_wins_over_host():
    env = {"REDIS_URL": "redis://r:1/2", "REDIS_HOST": "ignored"}
    assert Settings.from_env(env).redis_url == "redis://r:1/2"


def test_ollama_alone_is_not_a_contradiction():
    assert Settings.from_env({"RUN_OLLAMA": "true"}).llm_backend == "ollama"


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"RUN_LLAMACPP": "true", "RUN_OLLAMA": "yes"}, "RUN_OLLAMA"),
        ({"RUN_SD": "sometimes"}, "RUN_SD"),
        ({"GPU_LAYERS": "12.5"}, "GPU_LAYERS"),
        ({"LLAMA_SLOTS": "999"}, "LLAMA_SLOTS"),
        ({"API_PORT": "0"}, "API_PORT"),
        ({"JOB_TIMEOUT": "inf"}, "JOB_TIMEOUT"),
        ({"JOB_DEADLINE": "0"}, "JOB_DEADLINE"),
        ({"REDIS_URL": "localhost:6379"}, "REDIS_URL"),
        ({"REDIS_URL": "redis://:bad-port:x"}, "REDIS_URL"),
        ({"MODEL_URL": "ftp://example.com/m.gguf"}, "MODEL_URL"),
        ({"LLAMA_SERVER_ARGS": '--chat-template "unclosed'}, "LLAMA_SERVER_ARGS"),
        ({"SD_MODEL_URL": "ftp://h/x"}, "SD_MODEL_URL"),
        ({"LORA_SHA256": "abc"}, "LORA_SHA256"),
        ({"SD_DEVICE": "tpu"}, "SD_DEVICE"),
        ({"SD_PORT": "0"}, "SD_PORT"),
        ({"REDIS_SENTINELS": "sentinel-1,sentinel-2:26379"}, "REDIS_SENTINELS"),
        ({"REDIS_SENTINELS": "s:99999"}, "REDIS_SENTINELS"),
        ({"REDIS_SENTINELS": "s:26379", "REDIS_URL": "redis://r:6379/0"}, "REDIS_SENTINELS"),
        ({"REDIS_TLS": "true", "REDIS_TLS_CA": "/no/such/ca.pem"}, "REDIS_TLS_CA"),
        ({"REDIS_TLS_CA": __file__}, "REDIS_TLS_CA"),
        ({"HEADER_TIMEOUT": "0"}, "HEADER_TIMEOUT"),
        ({"API_MAX_CONNECTIONS": "0"}, "API_MAX_CONNECTIONS"),
        ({"CORS_ORIGINS": "null"}, "CORS_ORIGINS"),
        ({"CORS_ORIGINS": "https://game.example/path"}, "CORS_ORIGINS"),
    ],
)
def test_a_bad_setting_names_itself_and_the_fix(env, variable):
    with pytest.raises(SettingsError) as raised:
        Settings.from_env(env)
    message = str(raised.value)
    assert raised.value.variable == variable
    assert message.startswith(f"{variable}: ") and "; " in message and "\n" not in message


def test_sentinels_are_host_port_pairs_and_the_master_has_a_default_name():
    settings = Settings.from_env({"REDIS_SENTINELS": "s1:26379, [::1]:26380", "REDIS_PASS": "pw"})
    assert settings.redis_sentinels == (("s1", 26379), ("::1", 26380))
    assert settings.redis_sentinel_master == "mymaster" and settings.redis_password == "pw"
    assert "pw" not in repr(settings)


def test_cors_origins_default_to_any_origin_and_list_exact_origins():
    assert Settings.from_env({}).cors_origins == ()
    assert Settings.from_env({"CORS_ORIGINS": "*"}).cors_origins == ()
    listed = Settings.from_env({"CORS_ORIGINS": "https://game.example/, http://localhost:8080"}).cors_origins
    assert listed == ("https://game.example", "http://localhost:8080")


def test_the_api_needs_a_token():
    with pytest.raises(SettingsError, match=r"^API_TOKENS: "):
        Settings.from_env({}).require_tokens()


def test_a_password_never_appears_in_a_settings_error():
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({"REDIS_URL": "http://user:hunter2@localhost"})
    assert "hunter2" not in str(raised.value)


def test_image_settings_follow_a1111s_layout_and_the_seeds_names():
    settings = Settings.from_env({"MODELS_DIR": "/m", "SD_MODEL_URL": "https://h/x.safetensors", "LORA_URL": "http://h/l",
                                  "VAE_SHA256": "A" * 64, "HF_TOKEN": "hf-secret"})  # fmt: skip
    assert str(settings.sd_checkpoints_dir) == "/m/image/models/Stable-diffusion"
    assert str(settings.sd_lora_dir) == "/m/image/models/Lora" and str(settings.sd_vae_dir) == "/m/image/models/VAE"
    assert settings.standalone_sd_port == 7860 and settings.sd_device == "auto"
    assert settings.vae_sha256 == "a" * 64 and settings.download_token == "hf-secret"
    assert "hf-secret" not in repr(settings)
