"""What the JVM servers of the local stacks share (Kafka, ZooKeeper): Java and Maven on
the machine, a classpath resolved from Maven Central into ``$METERLINE_HOME``, and the
``java`` command line that runs a main class from it."""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import sys
from pathlib import Path

DEPLOY_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(DEPLOY_DIR))

from pidfiles import StackError  # noqa: E402  (deploy/ is a directory of scripts, not a package)
from stack_base import (  # noqa: E402  (deploy/ is a directory of scripts, not a package)
    apt_install,
    find_executable,
    java_major,
    run_logged,
)


def ensure_java_tools(home: Path, minimum_java: int = 17) -> str:
    """Java and Maven on the machine (apt installs Maven, which pulls a JRE, when either
    is missing); the java binary to use."""
    if find_executable("mvn") is None or find_executable("java") is None:
        apt_install(["maven"], home / "logs" / "apt.log")
    java = find_executable("java") or "java"
    if java_major(java) < minimum_java:
        raise StackError(f"need Java {minimum_java} or newer; {java} is older")
    return java


def resolve_jars(
    pom: Path, properties: dict[str, str], libs: Path, core_jar: str, log_path: Path
) -> None:
    """Copy a pom's runtime classpath into ``libs`` once per pom content (``libs`` is per
    version, so the properties, which name the version, need no hash of their own).

    ``libs.ok`` beside ``libs`` holds the pom's sha256 and is written only after Maven
    succeeded, so an interrupted download is redone from scratch instead of starting a
    server with missing jars. A lock beside it keeps two stacks of one METERLINE_HOME
    (the single node and the cluster share the Kafka jars) from resolving the same
    directory at once.
    """
    marker = libs.parent / "libs.ok"
    wanted = hashlib.sha256(pom.read_bytes()).hexdigest()
    libs.parent.mkdir(parents=True, exist_ok=True)
    with (libs.parent / "libs.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists() and marker.read_text().strip() == wanted:
            return
        print(f"  resolving {core_jar} and its classpath from Maven Central ...", flush=True)
        shutil.rmtree(libs, ignore_errors=True)
        marker.unlink(missing_ok=True)
        cmd = [
            find_executable("mvn") or "mvn",
            "-q",
            "-B",
            "-Dstyle.color=never",
            "-f",
            str(pom),
            *(f"-D{key}={value}" for key, value in properties.items()),
            f"-DoutputDirectory={libs}",
            "dependency:copy-dependencies",
        ]
        run_logged(cmd, log_path, "resolving jars with Maven")
        if not (libs / core_jar).exists():
            raise StackError(f"Maven finished but {libs / core_jar} is missing")
        marker.write_text(wanted + "\n")


def java_command(
    java: str,
    main_class: str,
    libs: Path,
    jvm_options: tuple[str, ...] = (),
    system_properties: dict[str, str] | None = None,
) -> list[str]:
    """``java`` running ``main_class`` from the jars in ``libs``."""
    props = [f"-D{key}={value}" for key, value in (system_properties or {}).items()]
    return [java, *jvm_options, *props, "-cp", str(libs / "*"), main_class]
