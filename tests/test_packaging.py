"""pip install . gives a working library; its pins agree with requirements."""

import re
import subprocess
import sys
import tomllib

from packaging.requirements import Requirement

from tests.conftest import ROOT


def pinned_requirements():
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            requirement = Requirement(line)
            pins[requirement.name.lower().replace("_", "-")] = (
                requirement.specifier
            )
    return pins


def test_pyproject_ranges_admit_the_pinned_versions():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = pinned_requirements()
    for dependency in project["dependencies"]:
        requirement = Requirement(dependency)
        name = requirement.name.lower().replace("_", "-")
        assert name in pins, f"{name} is not pinned in requirements.txt"
        (pin,) = [s.version for s in pins[name]]
        assert requirement.specifier.contains(pin), (dependency, pin)
        if requirement.extras:  # tensorflow-probability[tf]
            assert re.search(rf"{re.escape(name)}\[tf\]==", (
                ROOT / "requirements.txt").read_text().replace("_", "-"))


def test_installed_package_works_outside_the_checkout(tmp_path):
    """The wheel carries the zoo (as anpvs_tf.zoo) and the embedded MNIST."""
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
         "--no-build-isolation", "--target", str(target), str(ROOT)],
        check=True, capture_output=True, timeout=300,
    )
    script = (
        "import anpvs_tf.zoo  # registers the zoo\n"
        "from anpvs_tf.registry import list_experiments, build_network\n"
        "from anpvs_tf import data\n"
        "import anpvs_tf\n"
        "assert 'lenet5_caffe_mnist_anp_vs' in list_experiments()\n"
        "assert build_network('lenet5_caffe', gated=False).count_params()"
        " == 431080\n"
        "images, labels = data.load_arrays('mnist', 'test', 'embedded')\n"
        "assert images.shape == (10000, 28, 28, 1)\n"
        "print(anpvs_tf.__file__)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
        text=True, timeout=300,
        env={"PYTHONPATH": str(target), "TF_CPP_MIN_LOG_LEVEL": "3",
             "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().startswith(str(target))
