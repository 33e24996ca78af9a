"""The command line: one option string means one thing in every command; shared choices are torch-free."""
import argparse
import re
import subprocess
import sys

import pytest

from topazpu_core import cli, options

# `-s` is "input px per output px" wherever it appears: preprocess -s/--scale downsamples the
# images by it, convert/extract -s/--down-scale divide the coordinates by it (the coordinates of
# images preprocessed with -s S are those of the raw images divided by S). Same factor, same
# direction; the long names differ because one command scales images, the others coordinates.
SAME_FACTOR = {"-s": {"scale", "down_scale"}}


def subcommand_options():
    """{command: {option string: argparse action}} of every `topazpu` subcommand."""
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {name: {s: a for a in p._actions for s in a.option_strings} for name, p in sub.choices.items()}


def units(help_text):
    """The length units a help text names: px and/or A."""
    text = help_text or ""
    found = set()
    if re.search(r"\bpx\b|\bpixels\b", text):
        found.add("px")
    if re.search(r"Å|\bA\b|Angstrom", text):
        found.add("A")
    return found


def test_every_option_string_has_one_meaning_across_commands():
    by_string = {}
    for command, opts in subcommand_options().items():
        for string, action in opts.items():
            by_string.setdefault(string, []).append((command, action))
    assert len(by_string) > 40  # the parser was really built
    for string, uses in by_string.items():
        dests = {a.dest for _, a in uses}
        if string in SAME_FACTOR:
            assert dests <= SAME_FACTOR[string], (string, dests)
        else:
            assert len(dests) == 1, "%s means %s in %s" % (string, dests, [c for c, _ in uses])
        unit_sets = {frozenset(units(a.help)) for _, a in uses}
        assert len(unit_sets) == 1, "%s is given in different units: %s" % (string, unit_sets)


def test_each_dest_is_reached_by_the_same_option_strings_everywhere():
    # e.g. the model file is never --model in one command and --model-file in another
    spellings = {}
    for command, opts in subcommand_options().items():
        for string, action in opts.items():
            if string.startswith("--"):
                spellings.setdefault(action.dest, {}).setdefault(command, set()).add(string)
    for dest, per_command in spellings.items():
        if dest == "help":
            continue
        variants = {frozenset(s) for s in per_command.values()}
        assert len(variants) == 1, "%s is spelled %s" % (dest, per_command)


def test_radius_and_model_options_are_named_for_what_they_mean():
    opts = subcommand_options()
    for command in opts:
        assert "-r" not in opts[command] and "--radius" not in opts[command], command
        assert "-m" not in opts[command], command
    assert opts["train"]["--label-radius"].dest == "label_radius"
    assert opts["train"]["--arch"].choices == options.ARCHITECTURES
    assert opts["train"]["--objective"].choices == options.OBJECTIVES
    assert "--method" not in opts["train"]  # --method is preprocess's normalisation
    assert opts["preprocess"]["--method"].choices == options.NORMALIZATIONS
    for command in ("pick", "extract"):
        assert opts[command]["--nms-radius"].dest == "nms_radius"
        assert opts[command]["--model"].required
        assert opts[command]["--orientations"].choices == options.ORIENTATIONS
    assert opts["evaluate"]["--match-radius"].required
    assert "--assignment-radius" not in opts["evaluate"]
    for gone in (["train", "--train-images", "x", "--train-targets", "y", "--particle-radius", "8", "-o", "m.pt",
                  "-r", "3"],
                 ["pick", "-m", "model.pt", "-o", "x.txt", "a.mrc"],
                 ["evaluate", "a.txt", "b.txt", "-r", "16"]):
        with pytest.raises(SystemExit):
            cli.build_parser().parse_args(gone)


def test_shared_choice_lists_import_without_torch():
    code = ("import sys, topazpu_core.options, scipion_topazpu.constants; "
            "assert 'torch' not in sys.modules, 'torch imported'; "
            "assert scipion_topazpu.constants.OBJECTIVES == list(topazpu_core.options.OBJECTIVES)")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_model_lengths_change_frame_in_one_place():
    meta = {"particle_radius": 8.25, "edge_margin": 4.125, "scale": 4.0}
    assert options.model_length_px(meta, "particle_radius", "raw") == 33.0
    assert options.model_length_px(meta, "edge_margin", "preprocessed") == 4.125
    assert options.model_length_px({"particle_radius": 8.0}, "particle_radius", "raw") == 8.0  # no scale: 1
    assert options.model_length_px(meta, "label_radius", "raw") is None
    # the NMS radius a model records, else (a model from before it was recorded) its particle radius
    assert options.model_nms_radius_px(dict(meta, nms_radius=10.3125), "raw") == 41.25
    assert options.model_nms_radius_px(meta, "raw") == 33.0 and options.model_nms_radius_px({}, "raw") is None
    with pytest.raises(ValueError, match="frame"):
        options.model_length_px(meta, "particle_radius", "training")
