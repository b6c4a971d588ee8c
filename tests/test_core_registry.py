"""The registry imports lazily and checks every method name, class and option before any generation."""

import subprocess
import sys

import pytest

from methods import registry
from methods.registry import MethodError, build_from_command_line, method_options, parse_options


def test_registry_is_lazy():
    probe = (
        "import sys, benchmark.run; from methods import registry; registry.build('ground-truth'); "
        "registry.build('reference-copy'); print(sorted(m for m in ('diffusers', 'peft') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "name, message",
    [
        ("nope", "unknown method 'nope'; known methods: everanimate, ground-truth"),
        ("methods.sanity:Nope", "module 'methods.sanity' has no 'Nope'"),
        ("json:JSONDecoder", "is not a concrete methods.base.ChunkMethod or VideoMethod subclass"),
        ("methods.base:ChunkMethod", "is not a concrete"),
        ("no_such_package.module:Method", "no module 'no_such_package.module'"),
        (":Method", "give package.module:Class"),
    ],
)
def test_bad_method_names_are_explained(name, message):
    with pytest.raises(MethodError, match=message):
        registry.method_class(name)


def test_options_stay_text_until_the_class_types_them():
    assert parse_options(["refert-num=5", "once=true"]) == {"refert_num": "5", "once": "true"}
    with pytest.raises(MethodError, match="not KEY=VALUE"):
        parse_options(["novalue"])
    with pytest.raises(MethodError, match="given twice"):
        parse_options(["steps=2", "steps=3"])


def test_options_are_typed_by_the_constructor():
    from methods.wan_animate import WanAnimate

    typed = method_options(WanAnimate, {"refert_num": "5", "steps": "4", "shift": "3", "weights": "123", "preset": "synthetic"})
    assert typed == {"refert_num": 5, "steps": 4, "shift": 3.0, "weights": "123", "preset": "synthetic"}
    assert isinstance(typed["shift"], float)
    from methods.vae_roundtrip import VaeRoundTrip

    assert method_options(VaeRoundTrip, {"once": "yes"}) == {"once": True}
    with pytest.raises(MethodError, match="once='maybe' expects true or false"):
        method_options(VaeRoundTrip, {"once": "maybe"})
    with pytest.raises(MethodError, match="steps='two' expects an integer"):
        method_options(WanAnimate, {"steps": "two"})


def test_unknown_options_are_refused_with_the_known_ones():
    from methods.wan_animate import WanAnimate

    with pytest.raises(MethodError, match=r"'wan-animate' has no option 'stepz'; its options: .*refert_num.*steps"):
        method_options(WanAnimate, {"stepz": "2"})
    # Test-only injection points are not command-line options.
    with pytest.raises(MethodError, match="no option 'backbone'"):
        method_options(WanAnimate, {"backbone": "x"})
    # A method without its own constructor takes no options at all.
    with pytest.raises(MethodError, match="'reference-copy' has no option 'steps'; its options: none"):
        build_from_command_line("reference-copy", ["steps=4"])


def test_the_effective_protocol_holds_the_carry_over_and_steps_that_run():
    from benchmark.protocol import Protocol

    protocol = Protocol(64, 96)
    assert build_from_command_line("reference-copy", None).effective_protocol(protocol) == protocol
    assert build_from_command_line("vae-roundtrip", None).effective_protocol(protocol).carry_over == 1
    wan = build_from_command_line("wan-animate", ["refert_num=5", "steps=4"]).effective_protocol(protocol)
    assert (wan.carry_over, wan.sampling_steps) == (5, 4)
    assert wan.hash != build_from_command_line("wan-animate", None).effective_protocol(protocol).hash
