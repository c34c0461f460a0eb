"""One Settings object. Precedence: defaults < $ZHIKU_HOME/zhiku.toml < ZHIKU_* environment < CLI flags."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

ENV_PREFIX = "ZHIKU_"
CONFIG_FILE = "zhiku.toml"

# The ranges a setting and every request that overrides it share: stated here once, used by the settings below,
# the HTTP bodies (/api, /v1, Chatchat's routes), chat requests and the CLI's options.
TOP_K_MAX = 100
TopK = Annotated[int, Field(ge=1, le=TOP_K_MAX, description="passages retrieved")]
ScoreThreshold = Annotated[float, Field(ge=0.0, le=1.0, description="least relevance kept, in [0, 1]: "
                                        "higher is stricter")]
CHUNK_MIN, CHUNK_MAX = 50, 100_000
ChunkSize = Annotated[int, Field(ge=CHUNK_MIN, le=CHUNK_MAX, description="characters per chunk")]
ChunkOverlap = Annotated[int, Field(ge=0, le=CHUNK_MAX, description="characters shared by neighbouring chunks")]


def default_home() -> Path:
    return Path(os.environ.get("ZHIKU_HOME") or Path.home() / ".zhiku").expanduser()


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", validate_default=True)

    # where everything lives
    home: Path = Field(default_factory=default_home, description="data folder: database, originals, indexes")
    models_dir: Path | None = Field(None, description="model pack folder (default: <home>/models)")
    database_url: str = Field("", description="where knowledge bases and conversations live: "
                              "sqlite:///<file> (default: <home>/zhiku.db) or postgresql://user:pass@host:port/db")

    # LLM
    model: str = Field("qwen2.5-coder-0.5b", description="model pack name or path to a .gguf file")
    llm_backend: Literal["llama_cpp", "openai", "chatglm_cpp"] = "llama_cpp"
    upstream_base_url: str = Field("", description="OpenAI-compatible upstream (llm_backend=openai)")
    upstream_api_key: str = ""
    upstream_timeout: float = 120.0
    ctx: int = Field(4096, ge=256, description="context window per slot (tokens)")
    threads: int = Field(0, ge=0, description="CPU threads for inference (0 = all cores)")
    parallel: int = Field(2, ge=1, le=64, description="concurrent generation slots")
    queue_size: int = Field(16, ge=0, description="requests waiting beyond the slots before 503")
    kv_cells: int = Field(0, ge=0, description="KV cache cells shared by the parallel sequences (0 = ctx x parallel); "
                          "a request waits while its prompt + max_tokens do not fit")
    prefix_cache: bool = Field(True, description="keep finished requests' KV to reuse shared prompt prefixes")
    prompt_lookup: bool = Field(True, description="greedy requests draft tokens from their own prompt "
                                "(prompt-lookup decoding; same output, faster KB answers)")
    prefill_chunk: int = Field(128, ge=16, description="prompt tokens evaluated per step beside running streams")
    share_cores: bool = Field(True, description="while chat generates, ingestion keeps to the cores generation "
                              "leaves free, and generation to its half")
    max_tokens_cap: int = Field(4096, ge=1, description="upper bound on max_tokens")
    default_max_tokens: int = Field(512, ge=1)

    # server
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    ui: bool = True
    language: Literal["auto", "zh", "en"] = "auto"
    api_key: str = Field("", description="when set, /v1 and /api need Authorization: Bearer <key>")
    api_keys_file: Path | None = Field(None, description="file with one API key per line")
    cors_origins: list[str] = Field(default_factory=list)
    max_body_mb: float = Field(8.0, gt=0)
    max_upload_mb: float = Field(200.0, gt=0, description="per uploaded file")
    max_request_upload_mb: float = Field(500.0, gt=0)
    max_files_per_request: int = Field(100, ge=1)
    max_messages: int = Field(256, ge=1)

    # knowledge bases
    embedder: str = Field("e5-small", description="e5-small | use-m3 | st:<folder> | gguf:<file> | openai:<model>")
    embed_threads: int = Field(0, ge=0, description="embedder threads (0 = all cores)")
    embed_base_url: str = Field("", description="OpenAI-compatible /v1 for openai:<model> embedders "
                                "(default: upstream_base_url)")
    embed_api_key: str = Field("", description="API key for embed_base_url (default: upstream_api_key)")
    chunk_size: ChunkSize = 500
    chunk_overlap: ChunkOverlap = 100
    title_enhance: bool = False
    max_chunks_per_document: int = Field(10_000, ge=0, description="a file that splits into more chunks is "
                                         "refused with a per-file error (0 = no limit)")
    top_k: TopK = 3
    score_threshold: ScoreThreshold = 0.0
    bm25_weight: float = Field(1.0, ge=0.0)
    dense_weight: float = Field(1.0, ge=0.0)
    ann_threshold: int = Field(50_000, ge=0, description="chunks above which dense search uses an ANN index")
    parse_timeout: float = Field(120.0, gt=0, description="seconds one file may take to parse")
    max_unzipped_mb: float = Field(500.0, gt=0, description="decompressed size limit for docx/xlsx/pptx/epub")
    ocr: bool = Field(True, description="read images and PDF pages without a text layer by OCR "
                      "(off: images refused, such pages only reported)")
    ocr_max_pages: int = Field(100, ge=1, description="pages read by OCR per document at most")
    ocr_threads: int = Field(0, ge=0, description="CPU threads OCR may use, pages read at once (0 = all cores)")
    ocr_model: Literal["tiny", "small"] = Field("tiny", description="PP-OCRv6 model inside faster-paddle: tiny "
                                                "(3x faster) or small")
    ocr_pictures: bool = Field(True, description="also read by OCR the large pictures on PDF pages that have a text "
                               "layer (a scanned figure, a screenshot), unless the text layer already says the same")

    # chat
    history_turns: int = Field(3, ge=0)
    temperature: float = Field(0.7, ge=0.0, le=2.0)
    answer_check: bool = Field(True, description="check that the passages state a knowledge-base answer before "
                               "showing it (it is held back until then; README, Answer quality)")
    answer_check_anchor: float = Field(0.35, ge=0.0, le=1.0, description="share of the question's terms that must "
                                       "surround the answer in a passage, else the no-answer reply")
    answer_check_p: float = Field(0.0, ge=0.0, le=1.0, description="also ask the model; below this P(yes) the "
                                  "no-answer reply (0: not asked)")
    no_answer_reply: str = Field("", description="the one refusal text of knowledge-base QA (empty: "
                                 "根据已知信息无法回答该问题。 for a Chinese question, 'The documents do not answer "
                                 "this question.' otherwise)")
    answer_quality: Literal["fast", "balanced", "best"] = Field(
        "balanced", description="fast: the default model only; balanced: the stronger pack answers when the "
        "default model's answer is not confirmed or the question has several parts; best: the stronger pack "
        "answers every knowledge-base question (README, Answer design)")
    strong_model: str = Field("qwen2.5-coder-1.5b", description="the stronger pack of answer_quality, used when "
                              "installed")
    answer_evidence: bool = Field(True, description="put the retrieved passages' sentences that bear on the "
                                  "question into the prompt, not whole chunks")
    file_chat_ttl_minutes: float = Field(60.0, gt=0)
    search_engine: Literal["searxng", "duckduckgo"] = "searxng"
    searxng_url: str = "http://127.0.0.1:8888"
    search_timeout: float = Field(10.0, gt=0)
    agent_max_steps: int = Field(5, ge=1, le=50)

    @field_validator("home", mode="after")
    @classmethod
    def _expand_home(cls, v: Path) -> Path:
        return v.expanduser()

    @property
    def models_path(self) -> Path:
        return (self.models_dir or self.home / "models").expanduser()

    @field_validator("database_url", mode="after")
    @classmethod
    def _check_database_url(cls, v: str) -> str:
        if v and not v.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise ValueError(f"database_url {mask_url(v)!r} is neither sqlite:///<file> nor "
                             "postgresql://user:password@host:port/database")
        return v

    @property
    def uses_postgres(self) -> bool:
        return self.database_url.startswith(("postgresql://", "postgres://"))

    @property
    def db_path(self) -> Path:
        """The SQLite file (when database_url is not PostgreSQL)."""
        if self.database_url.startswith("sqlite:///"):
            return Path(self.database_url.removeprefix("sqlite:///")).expanduser()
        return self.home / "zhiku.db"

    @property
    def config_file(self) -> Path:
        return self.home / CONFIG_FILE

    def retrieval(self, top_k: int | None = None, score_threshold: float | None = None) -> tuple[int, float]:
        """A request's top_k and score_threshold: each the configured one where the request leaves it unset
        (the one place that rule lives: searches, chat turns and every API route come through here)."""
        return (self.top_k if top_k is None else top_k,
                self.score_threshold if score_threshold is None else score_threshold)

    @property
    def resolved_threads(self) -> int:
        return self.threads or os.cpu_count() or 1

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = TomlConfigSettingsSource(settings_cls, toml_file=default_home() / CONFIG_FILE)
        return (init_settings, env_settings, toml)


SECRET_SUFFIXES = ("key", "token", "password", "secret")  # a setting or URL parameter so named is a secret


def mask_url(url: str) -> str:
    """The URL with its password (user:password@ or ?password=) replaced by ***, for showing and logging."""
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "***"
    if password is not None:
        user, host = parts.netloc.rsplit("@", 1)
        parts = parts._replace(netloc=f"{user.split(':', 1)[0]}:***@{host}")
    query = parse_qsl(parts.query, keep_blank_values=True)
    if any(k.lower().endswith(SECRET_SUFFIXES) for k, _ in query):
        parts = parts._replace(query=urlencode(
            [(k, "***" if k.lower().endswith(SECRET_SUFFIXES) else v) for k, v in query], safe="*"))
    return urlunsplit(parts)


def shown_settings(settings: Settings) -> dict[str, Any]:
    """The settings as `zhiku config show` prints them: every key, token, password or secret as *** (an
    empty one stays empty, so "not set" still shows) and every URL with its password masked."""
    values = settings.model_dump(mode="json")
    for name, value in values.items():
        if isinstance(value, str) and value and name.endswith(SECRET_SUFFIXES):
            values[name] = "***"
        elif isinstance(value, str) and name.endswith("_url"):
            values[name] = mask_url(value)
    return values


def load_settings(**cli: Any) -> Settings:
    """Build the effective settings; `cli` holds flags given on the command line (None = not given)."""
    overrides = {k: v for k, v in cli.items() if v is not None}
    return Settings(**overrides)


def setting_sources(**cli: Any) -> dict[str, str]:
    """Where each setting's value comes from: cli, env, zhiku.toml or default."""
    toml_path = default_home() / CONFIG_FILE
    toml_keys: set[str] = set()
    if toml_path.exists():
        toml_keys = set(tomllib.loads(toml_path.read_text(encoding="utf-8")))
    out: dict[str, str] = {}
    for name in Settings.model_fields:
        if cli.get(name) is not None:
            out[name] = "cli"
        elif (ENV_PREFIX + name.upper()) in os.environ:
            out[name] = "env"
        elif name in toml_keys:
            out[name] = str(toml_path)
        else:
            out[name] = "default"
    return out
