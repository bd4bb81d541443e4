"""``python -m ganlab.humaneval serve|report|export key=value ...`` (Hydra config ``conf/humaneval.yaml``).

Sub-command: Hydra has none, so the choice is the config key ``command`` (kept in the run's saved
config like every other setting); a first positional word is sugar for ``command=<word>``, rewritten
before Hydra parses ``sys.argv``. Likewise ``fake=A fake=B`` (Hydra would keep only the last) is
folded into ``fake=['A','B']``.

    serve  real=DIR fake=DIR [fake=DIR ...] db=FILE [port=8765] [host=127.0.0.1] [n_per_rater=100]
           [exposure_ms=null] [seed=0] [attention=DIR attention_n=5]
           creates the study in db on the first start (images re-encoded into the db), reopens it on
           later starts (real/fake may then be omitted; if given they must match the study's)
    report db=FILE [out=DIR] [n_bootstrap=2000] [ci=0.95] [attention_max_errors=0]
    export db=FILE [out=DIR]     -> DIR/answers.csv
"""

from __future__ import annotations

import ipaddress
import logging
import os
import sys
from collections import Counter
from typing import Any, Mapping

import hydra
import numpy as np
from omegaconf import DictConfig, ListConfig, OmegaConf

import ganlab  # noqa: F401  (config resolvers)
from ganlab.humaneval import images as imgs
from ganlab.humaneval import scores as rep
from ganlab.humaneval import study as db
from ganlab.utils.conf_dir import conf_dir

log = logging.getLogger("ganlab.humaneval")
COMMANDS = ("serve", "report", "export")


class HumanEvalError(ValueError):
    """A bad request: printed as one line by ``python -m ganlab.humaneval``."""


ERRORS = (HumanEvalError, db.StudyError, imgs.ImageSetError, rep.ReportError)


def rewrite_argv(argv: list[str]) -> list[str]:
    """``serve a=1 fake=X fake=Y`` -> ``a=1 fake=['X','Y'] command=serve`` (see the module doc)."""
    args = list(argv)
    out: list[str] = []
    if args and "=" not in args[0] and not args[0].startswith("-"):
        word = args.pop(0)
        if word not in COMMANDS:
            raise HumanEvalError(f"unknown command {word!r}; expected one of {', '.join(COMMANDS)}")
        out.append(f"command={word}")
    fakes = [a.split("=", 1)[1] for a in args if a.startswith("fake=")]
    if len(fakes) > 1:
        if any("'" in f for f in fakes):
            raise HumanEvalError("a fake=... folder name contains a quote; use fake='{name: DIR, ...}' instead")
        args = [a for a in args if not a.startswith("fake=")] + ["fake=[" + ",".join(f"'{f}'" for f in fakes) + "]"]
    return args + out


def _plain(x: Any) -> Any:
    return OmegaConf.to_container(x, resolve=True) if isinstance(x, (DictConfig, ListConfig)) else x


def _int(cfg: Mapping, key: str, minimum: int, allow_none: bool = False) -> int | None:
    v = cfg.get(key)
    if v is None and allow_none:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        raise HumanEvalError(f"{key} must be an integer >= {minimum}{' or null' if allow_none else ''}, got {v!r}")
    return int(v)


def fake_sets(fake: Any) -> dict[str, str]:
    """``fake`` (a folder, a list of folders or a mapping name -> folder) as name -> folder."""
    fake = _plain(fake)
    if fake is None or fake == [] or fake == {}:
        raise HumanEvalError("fake=DIR is required to create a study (repeat it, fake=A fake=B, for several sets)")
    if isinstance(fake, str):
        fake = [fake]
    if isinstance(fake, list):
        names = [os.path.basename(os.path.normpath(str(f))) or str(f) for f in fake]
        dup = [n for n, c in Counter(names).items() if c > 1]
        if dup:  # same folder names under different parents: name them by their full path
            names = [os.path.normpath(str(f)) for f in fake]
        fake = dict(zip(names, fake))
    if not isinstance(fake, dict):
        raise HumanEvalError(f"fake must be a folder, a list of folders or a mapping name -> folder, got {fake!r}")
    if len(set(map(os.path.realpath, map(str, fake.values())))) != len(fake):
        raise HumanEvalError("the same fake folder is given twice")
    return {str(k): str(v) for k, v in fake.items()}


def noise_images(n: int, resolution: int, encoding: str, seed: int) -> list[imgs.Encoded]:
    """Obviously fake attention-check images: uniform colour noise."""
    import hashlib

    rng = np.random.default_rng([seed, 7])
    out = []
    for i in range(n):
        data = imgs.encode_pixels(rng.integers(0, 256, (resolution, resolution, 3), dtype=np.uint8), encoding)
        out.append(imgs.Encoded(f"noise_{i:03d}", data, hashlib.sha256(data).hexdigest()))
    return out


def build_study(cfg: Mapping) -> None:
    """Create the study db from ``real``, ``fake`` (and ``attention``): every image re-encoded alike."""
    if not cfg.get("real"):
        raise HumanEvalError("real=DIR is required to create a study (a folder of real images)")
    fakes = fake_sets(cfg.get("fake"))
    if "real" in fakes or "attention" in fakes:
        raise HumanEvalError("a generated set may not be named 'real' or 'attention'")
    n = _int(cfg, "n_per_rater", 2)
    if n % 2:
        raise HumanEvalError(f"n_per_rater must be even (half real, half fake), got {n}")
    attention_n = _int(cfg, "attention_n", 0)
    folders = {"real": str(cfg["real"]), **fakes}
    if cfg.get("attention"):
        folders["attention"] = str(cfg["attention"])
    files = {name: imgs.list_images(folder) for name, folder in folders.items()}
    resolution = _int(cfg, "resolution", 8, allow_none=True)
    if resolution is None:  # the generated images' size: reals are brought to it, never the reverse
        first = next(iter(fakes))
        resolution = min(imgs.image_size(os.path.join(fakes[first], files[first][0])))
    encoding = str(cfg.get("encoding", "png_stored"))
    if encoding not in imgs.ENCODINGS:
        raise HumanEvalError(f"encoding must be one of {', '.join(imgs.ENCODINGS)}, got {encoding!r}")
    need = {"real": n // 2, **{s: db.fake_share(n, len(fakes)) for s in fakes}}
    if attention_n:
        need["attention"] = attention_n
    for name, k in need.items():
        have = len(files.get(name, [])) if name != "attention" or cfg.get("attention") else k
        if have < k:
            raise HumanEvalError(f"{name} set ({folders.get(name)}): {have} images, but each rater needs {k} "
                                 f"distinct ones (n_per_rater={n}, {len(fakes)} generated set(s))")
    seed = _int(cfg, "seed", 0)
    settings = db.StudySettings(n_per_rater=n, attention_n=attention_n,
                                exposure_ms=_int(cfg, "exposure_ms", 1, allow_none=True), seed=seed,
                                resolution=resolution, encoding=encoding, show_score=bool(cfg.get("show_score", True)))
    sets: dict[str, tuple[str, str, Any]] = {}
    for name, folder in folders.items():
        kind = "real" if name == "real" else "attention" if name == "attention" else "fake"
        log.info("re-encoding %d images of %s (%s) at %d px", len(files[name]), name, folder, resolution)
        sets[name] = (kind, folder, imgs.encode_folder(folder, resolution, encoding))
    if attention_n and "attention" not in sets:
        sets["attention"] = ("attention", "(generated noise)", noise_images(max(attention_n, 20), resolution, encoding, seed))
    db.create_study(str(cfg["db"]), settings, sets)


def check_same_study(cfg: Mapping, settings: db.StudySettings) -> None:
    """On a restart, ``real``/``fake`` may be omitted; if given they must be the study's own folders."""
    asked = {}
    if cfg.get("real"):
        asked["real"] = str(cfg["real"])
    if cfg.get("fake"):
        asked.update(fake_sets(cfg["fake"]))
    for name, folder in asked.items():
        stored = settings.sets.get(name)
        if stored is None or os.path.realpath(stored["source"]) != os.path.realpath(folder):
            raise HumanEvalError(f"db={cfg['db']} already holds a study with other images ({name}={folder} is not in it: "
                                 f"{ {k: v['source'] for k, v in settings.sets.items()} }); use another db=FILE")


def allowed_hosts(host: str) -> list[str]:
    return sorted({"127.0.0.1", "localhost", host})


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(cfg: Mapping) -> None:
    import uvicorn

    from ganlab.humaneval.app import create_app

    if not cfg.get("db"):
        raise HumanEvalError("db=FILE is required (the study database; created on the first start)")
    if os.path.exists(str(cfg["db"])):
        conn, settings = db.open_study(str(cfg["db"]))
        conn.close()
        check_same_study(cfg, settings)
    else:
        build_study(cfg)
    host, port = str(cfg.get("host", "127.0.0.1")), _int(cfg, "port", 1)
    if not is_loopback(host):
        log.warning("binding %s: the study is reachable from other machines; anyone who can reach %s:%d can "
                    "take part. Use host=127.0.0.1 unless that is what you want.", host, host, port)
        print(f"ganlab.humaneval: WARNING: serving on {host}, not a loopback address", file=sys.stderr)
    app = create_app(str(cfg["db"]), allowed_hosts(host))
    s = app.state.study.settings
    print(f"ganlab.humaneval: study {os.path.abspath(str(cfg['db']))}: sets "
          f"{ {k: v['count'] for k, v in s.sets.items()} }, {s.n_per_rater} images per rater", flush=True)
    print(f"ganlab.humaneval: serving on http://{host}:{port}/", flush=True)
    uvicorn.run(app, host=host, port=port, log_level=str(cfg.get("log_level", "warning")), server_header=False,
                access_log=False)


def run(cfg: DictConfig) -> None:
    command = cfg.get("command")
    if command not in COMMANDS:
        raise HumanEvalError(f"command must be one of {', '.join(COMMANDS)} (python -m ganlab.humaneval serve ...), "
                             f"got {command!r}")
    if command == "serve":
        return serve(cfg)
    if not cfg.get("db"):
        raise HumanEvalError(f"{command} needs db=FILE (the study database)")
    out = str(cfg.get("out") or cfg.paths.output_dir)
    if command == "report":
        result = rep.report(str(cfg["db"]), out, n_bootstrap=_int(cfg, "n_bootstrap", 1), ci=float(cfg.ci),
                            seed=_int(cfg, "bootstrap_seed", 0), attention_max_errors=_int(cfg, "attention_max_errors", 0))
        for r in result["scores"]:
            print(f"{r['set']}: HYPE-inf {100 * r['hype']:.1f} % [{100 * r['hype_lo']:.1f}, {100 * r['hype_hi']:.1f}]"
                  f"  fake error {100 * r['fake_error']:.1f} %  real error {100 * r['real_error']:.1f} %")
        print(f"{result['n_raters']} raters, {result['n_excluded']} excluded; report in {os.path.abspath(out)}")
    else:
        path = os.path.join(out, "answers.csv")
        n = rep.export(str(cfg["db"]), path)
        print(f"wrote {n} answers to {os.path.abspath(path)}")


CONF_DIR = conf_dir()


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="humaneval")
def _hydra_main(cfg: DictConfig) -> None:
    try:
        run(cfg)
    except ERRORS as err:
        print(f"ganlab.humaneval: error: {err}", file=sys.stderr)
        sys.exit(2)


def main() -> None:
    try:
        sys.argv[1:] = rewrite_argv(sys.argv[1:])
    except HumanEvalError as err:
        print(f"ganlab.humaneval: error: {err}", file=sys.stderr)
        sys.exit(2)
    _hydra_main()
