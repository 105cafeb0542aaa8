"""Every bad input of docs/errors.md, through the command line: exit code 2, exactly one line on stderr
naming the file or option, what was found and what was expected, and no output left behind.

The table in docs/errors.md is this file's CASES, run: `python tests/test_errors.py > docs/errors.md`.
Commands are written with placeholders ({data}, {out}, ...) that `inputs()` fills with real files.
"""

from __future__ import annotations

import json
import os
import re
import socket
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import prepare_bbc
from fednlp.cli import main
from fednlp.data.datafile import read_data_file

METHOD = "niid_label_clients=12_alpha=1.0"  # the partition of the `bbc` fixture (conftest.py)
TRAIN = ("train", "--data", "{data}", "--partition", "{part}", "--method", METHOD, "--model", "tiny-bert",
         "--rounds", "1", "--clients-per-round", "2", "--local-steps", "1", "--out", "{out}")
PREPARE_CSV = ("data", "prepare", "--dataset", "csv", "--text-column", "text", "--label-column", "label",
               "--test-fraction", "0.5", "--out", "{out}")

#: What each placeholder of a command is (the last column of the inputs list in docs/errors.md).
PLACEHOLDERS = {
    "data": "BBC News (2,225 articles) prepared with `--dataset textdir`",
    "part": f"its partition file, group {METHOD}",
    "small": "a classification data file of 20 examples",
    "seq2seq": "a seq2seq data file of 20 examples",
    "text": "a text file",
    "cut": "a data file cut to half its length",
    "dir": "a directory",
    "missing": "a path where nothing exists",
    "run": "a run directory holding result.json (a finished run)",
    "out": "a fresh output path",
    "locked": "a CSV file with mode 000",
    "binary": "a CSV file with a byte that is not UTF-8",
    "conll": "a CoNLL file whose line 5 has a token but no tag",
    "squad": "SQuAD JSON whose second question's answer_start points elsewhere",
    "csv": "a CSV file whose line 3 has no label",
    "foreign": f"{{part}} with its group {METHOD} as FedNLP's scripts write it (no seed recorded)",
    "fractional": "{part} with client 0's train indices stored as float64, one of them 1.5",
    "untyped": "a data file in FedNLP's per-example layout with text X and Y, a label_vocab and no task_type",
    "lmrun": "a finished `--task lm` run directory (result.json, config.yaml reading {small}, model/)",
    "cutmodel": "a run directory whose model/model.safetensors lacks its last byte",
}


@dataclass(frozen=True)
class Case:
    """One bad input: the command tried, and the words its one error line must hold."""

    id: str
    bad_input: str
    argv: tuple[str, ...]
    expected: tuple[str, ...]
    marks: tuple = field(default=())


def train(*changes: str) -> tuple[str, ...]:
    """The TRAIN command with flags replaced or added (flag, value pairs)."""
    argv = list(TRAIN)
    for flag, value in zip(changes[0::2], changes[1::2]):
        if flag in argv:
            argv[argv.index(flag) + 1] = value
        else:
            argv += [flag, value]
    return tuple(argv)



CASES = [
    # ------------------------------------------------------------------ missing or unreadable files
    Case("prepare_missing_source", "missing raw file", ("data", "prepare", "--dataset", "csv", "--source", "{missing}",
         "--out", "{out}"), ("--source", "does not exist")),
    Case("prepare_unreadable_source", "unreadable raw file", (*PREPARE_CSV, "--source", "{locked}"),
         ("cannot read it", "Permission denied", "expected a readable file")),
    Case("prepare_out_is_a_directory", "--out is a directory", (*PREPARE_CSV[:-2], "--source", "{csv}",
         "--out", "{dir}"), ("--out", "is a directory", "expected the path of the data file")),
    Case("partition_missing_data", "missing data file", ("partition", "--data", "{missing}", "--out", "{out}",
         "--method", "uniform", "--clients", "2"), ("data file", "does not exist")),
    Case("train_missing_data", "missing data file", train("--data", "{missing}"), ("data file", "does not exist")),
    Case("stats_missing_partition", "missing partition file", ("partition-stats", "--data", "{data}",
         "--partition", "{missing}"), ("partition file", "does not exist")),
    Case("train_data_is_a_directory", "a directory given as a data file", train("--data", "{dir}"),
         ("data file", "is a directory, expected an HDF5 file")),
    Case("stats_partition_is_a_directory", "a directory given as a partition file", ("partition-stats", "--data",
         "{data}", "--partition", "{dir}"), ("partition file", "is a directory, expected an HDF5 file")),
    # ------------------------------------------------------------------ not HDF5, truncated, not UTF-8
    Case("partition_data_not_hdf5", "data file that is not HDF5", ("partition", "--data", "{text}", "--out",
         "{out}", "--method", "uniform", "--clients", "2"), ("data file", "is not a readable HDF5 file")),
    Case("train_partition_not_hdf5", "partition file that is not HDF5", train("--partition", "{text}"),
         ("partition file", "is not a readable HDF5 file")),
    Case("partition_data_truncated", "truncated data file", ("partition", "--data", "{cut}", "--out", "{out}",
         "--method", "uniform", "--clients", "2"), ("data file", "is not a readable HDF5 file")),
    Case("train_data_truncated", "truncated data file", train("--data", "{cut}"),
         ("data file", "is not a readable HDF5 file")),
    Case("prepare_not_utf8", "raw file that is not UTF-8", (*PREPARE_CSV, "--source", "{binary}"),
         ("binary.csv:2:", "is not UTF-8", "expected UTF-8 text")),
    # ------------------------------------------------------------------ a data file of another task
    Case("partition_labels_on_seq2seq", "label partition of a seq2seq data file", ("partition", "--data",
         "{seq2seq}", "--out", "{out}", "--method", "niid_label", "--clients", "2", "--alpha", "1"),
         ("--method niid_label needs labels", "seq2seq data", "use --method niid_cluster")),
    Case("train_tagging_on_classification", "--task tagging on classification data", train("--task", "tagging"),
         ("--task tagging needs sequence_tagging data", "holds text_classification data")),
    # ------------------------------------------------------------------ partitions
    Case("train_method_not_in_file", "partition method not in the file", train("--method", "uniform_clients=99"),
         ("partition file", "has no partition 'uniform_clients=99'", f"it has: {METHOD}")),
    Case("stats_method_not_in_file", "partition method not in the file", ("partition-stats", "--data", "{data}",
         "--partition", "{part}", "--method", "uniform"), ("has no partition 'uniform'", f"it has: {METHOD}")),
    Case("train_indices_out_of_range", "partition made for a bigger data file", train("--data", "{small}"),
         ("holds indices outside 0..19 of data file", "was it made from another data file?")),
    Case("stats_indices_out_of_range", "partition made for a bigger data file", ("partition-stats", "--data",
         "{small}", "--partition", "{part}"), ("outside", "of data file")),
    # ------------------------------------------------------------------ impossible numbers
    Case("train_clients_per_round_0", "clients per round 0", train("--clients-per-round", "0"),
         ("--clients-per-round must be positive, got 0",)),
    Case("train_clients_per_round_above_clients", "clients per round above the client count",
         train("--clients-per-round", "13"), ("--clients-per-round 13 exceeds the 12 clients",)),
    Case("train_negative_lr", "negative learning rate", train("--lr", "-0.1"), ("--lr must be positive, got -0.1",)),
    Case("train_negative_server_lr", "negative server learning rate", train("--algorithm", "fedadam",
         "--server-lr", "-1"), ("--server-lr must be positive, got -1",)),
    Case("partition_alpha_0", "alpha 0", ("partition", "--data", "{data}", "--out", "{out}", "--method",
         "niid_label", "--clients", "4", "--alpha", "0"), ("--alpha must be a positive finite number, got 0.0",)),
    Case("partition_alpha_negative", "negative alpha", ("partition", "--data", "{data}", "--out", "{out}",
         "--method", "niid_label", "--clients", "4", "--alpha", "-1"), ("--alpha must be a positive finite number",)),
    Case("partition_clients_0", "0 clients", ("partition", "--data", "{data}", "--out", "{out}", "--method",
         "uniform", "--clients", "0"), ("--clients must be at least 1, got 0",)),
    Case("partition_clients_above_examples", "more clients than examples", ("partition", "--data", "{small}",
         "--out", "{out}", "--method", "uniform", "--clients", "17"), ("--clients 17 is more than the 16 training",)),
    Case("train_max_length_below_special_tokens", "max length below the special tokens",
         train("--max-seq-length", "2"), ("--max-seq-length 2 leaves no room", "2 special tokens")),
    Case("prepare_test_fraction_1", "test fraction outside (0, 1)", (*PREPARE_CSV[:-4], "--test-fraction", "1",
         "--out", "{out}", "--source", "{csv}"), ("--test-fraction must lie strictly between 0 and 1",)),
    # ------------------------------------------------------------------ unknown names, with the known ones
    Case("train_unknown_model", "unknown model name", train("--model", "nosuch-model"),
         ("--model 'nosuch-model' could not be loaded", "built-in offline models: minilm, tiny-bert")),
    Case("train_unknown_algorithm", "unknown algorithm", train("--algorithm", "nosuch"),
         ("--algorithm 'nosuch' is not a known algorithm; known:", "fedavg", "fedprox")),
    Case("train_fp16_on_the_cpu", "--precision fp16 without a GPU",
         train("--precision", "fp16", "--device", "cpu"), ("--precision fp16 needs a GPU", "use bf16 or fp32")),
    # ------------------------------------------------------------------ cached frozen layers (--cache-frozen)
    Case("train_cache_frozen_without_freeze_layers", "--cache-frozen without --freeze-layers",
         train("--cache-frozen", "true"), ("--cache-frozen needs --freeze-layers K",)),
    Case("train_frozen_cache_dtype_unknown", "unknown storage dtype of the frozen-layer cache",
         train("--freeze-layers", "1", "--cache-frozen", "true", "--frozen-cache-dtype", "int8"),
         ("--frozen-cache-dtype must be bf16, fp16 or fp32, got 'int8'",)),
    Case("train_cache_frozen_more_blocks_than_the_model", "--freeze-layers above the model's blocks, cached",
         train("--freeze-layers", "9", "--cache-frozen", "true"),
         ("--freeze-layers 9 exceeds the model's 2 transformer blocks",)),
    # ------------------------------------------------------------------ differential privacy (docs/privacy.md)
    Case("train_dp_incompatible_algorithm", "an algorithm that uses unnoised per-client values, with --dp",
         train("--algorithm", "qfedavg", "--q", "1", "--dp", "client", "--dp-clip", "1", "--dp-noise-multiplier", "1"),
         ("--algorithm qfedavg cannot run with --dp client",)),
    Case("train_dp_delta_above_one_over_n", "--dp-delta at or above 1/N",
         train("--dp", "client", "--dp-clip", "1", "--dp-noise-multiplier", "1", "--dp-delta", "0.5"),
         ("--dp-delta 0.5 must be below 1/N",)),
    Case("train_dp_release_with_eval_clients", "--dp-release with an option that publishes per-client values",
         train("--dp", "client", "--dp-clip", "1", "--dp-noise-multiplier", "1", "--dp-release", "true",
               "--on-nonfinite", "skip-client", "--eval-clients", "all"),
         ("--dp-release cannot be combined with --eval-clients",)),
    Case("train_dp_release_without_dp", "--dp-release without --dp", train("--dp-release", "true"),
         ("--dp-release needs --dp client or --dp sample",)),
    Case("train_unknown_sampler", "unknown sampler", train("--sampler", "nosuch"),
         ("--sampler 'nosuch' is not a known sampler; known:", "uniform")),
    Case("train_unknown_task", "unknown task", train("--task", "nosuch"),
         ("--task 'nosuch' is not a known task; known:", "classification")),
    Case("partition_unknown_method", "unknown partition method", ("partition", "--data", "{data}", "--out",
         "{out}", "--method", "nosuch", "--clients", "2"), ("--method 'nosuch' is not a partition method; known:",
                                                             "niid_label")),
    Case("prepare_unknown_dataset", "unknown dataset reader", ("data", "prepare", "--dataset", "nosuch",
         "--source", "{csv}", "--out", "{out}"), ("--dataset 'nosuch' is not a known dataset; known:", "conll")),
    # ------------------------------------------------------------------ non-numbers, limits, outputs that cannot be made
    Case("train_lr_nan", "learning rate NaN", train("--lr", "nan"), ("--lr must be a finite number, got nan",)),
    Case("train_seed_negative", "negative seed", train("--seed", "-1"),
         ("--seed must be an integer in [0, 2**32 - 1], got -1",)),
    Case("partition_seed_beyond_32_bits", "seed beyond 32 bits", ("partition", "--data", "{data}", "--out", "{out}",
         "--method", "uniform", "--clients", "2", "--seed", "99999999999"),
         ("--seed must be an integer in [0, 2**32 - 1], got 99999999999",)),
    Case("train_out_under_a_file", "--out under a path that cannot be created", train("--out", "{text}/run"),
         ("--out", "cannot be created:", "is not a directory")),
    Case("prepare_out_under_a_file", "--out under a path that cannot be created", (*PREPARE_CSV[:-2], "--source",
         "{csv}", "--out", "{text}/data.h5"), ("--out", "cannot be created:", "is not a directory")),
    Case("train_max_length_above_model_positions", "max length above the model's position embeddings",
         train("--max-seq-length", "100000"), ("--max-seq-length 100000 exceeds what --model 'tiny-bert' can take: "
                                               "512 positions", "expected at most 512")),
    Case("supervise_without_out", "supervised run without --out", ("supervise", "--max-restarts", "1", "--",
         "fednlp", "train", "--data", "{data}"), ("give the supervised train command an --out RUN_DIR",)),
    # ------------------------------------------------------------------ an output that holds a finished run
    Case("train_out_holds_finished_run", "--out holds a finished run", train("--out", "{run}"),
         ("already holds a finished run", "--overwrite true", "--resume")),
    # ------------------------------------------------------------------ malformed raw files (--bad-records error)
    Case("prepare_conll_missing_column", "CoNLL line with a missing column", ("data", "prepare", "--dataset",
         "conll", "--source", "{conll}", "--test-fraction", "0.5", "--out", "{out}"),
         ("conll.txt:5: expected at least 2 columns, found 1",)),
    Case("prepare_squad_span_mismatch", "SQuAD answer whose span does not match its text", ("data", "prepare",
         "--dataset", "squad", "--source", "{squad}", "--test-fraction", "0.5", "--out", "{out}"),
         ("squad.json:", "question q2: answer 'Ada' does not match the context at 3",
          "expected answer_start where the context holds the answer text")),
    Case("prepare_csv_row_without_label", "CSV row with no label", (*PREPARE_CSV, "--source", "{csv}"),
         ("csv.csv:3: row has no label in column 'label'; expected a non-empty label",)),
    # ------------------------------------------------------------------ a group made otherwise; FedNLP's files
    Case("partition_group_made_with_another_seed", "a group of the same name made with another seed",
         ("partition", "--data", "{data}", "--out", "{part}", "--method", "niid_label", "--clients", "12", "--alpha",
          "1", "--seed", "1"), (f"already holds group '{METHOD}', made with other settings: seed 0, not 1",
                                "pass --overwrite to replace it")),
    Case("partition_group_written_by_fednlp", "a group of the same name written by FedNLP's scripts",
         ("partition", "--data", "{data}", "--out", "{foreign}", "--method", "niid_label", "--clients", "12",
          "--alpha", "1"), ("made not by fednlp (it records no seed; FedNLP's scripts write none)", "--overwrite")),
    Case("stats_indices_not_whole_numbers", "partition indices that are not whole numbers", ("partition-stats",
         "--data", "{data}", "--partition", "{fractional}"), ("partition_data/0/train holds float64 values that are "
                                                              "not whole numbers; expected data-file indices",)),
    Case("partition_data_without_task_type", "FedNLP data file whose task cannot be told from its fields",
         ("partition", "--data", "{untyped}", "--out", "{out}", "--method", "uniform", "--clients", "2"),
         ("has no task_type and its fields (X, Y) hold text X and Y", "could be text_classification or seq2seq",
          "expected a task_type in its attributes")),
    # ------------------------------------------------------------------ outputs that would destroy a file
    Case("prepare_out_is_its_source", "--out naming the raw file itself", (*PREPARE_CSV[:-2], "--source", "{csv}",
         "--out", "{csv}"), ("--out", "is the same file as --source", "expected a new path")),
    Case("prepare_out_is_a_partition_file", "--out naming an existing partition file", (*PREPARE_CSV[:-2],
         "--source", "{csv}", "--out", "{part}"), ("is an existing partition file",
                                                   "expected a new path or a data file to replace")),
    Case("partition_out_is_its_data", "--out naming the data file itself", ("partition", "--data", "{data}",
         "--out", "{data}", "--method", "uniform", "--clients", "2"), ("--out", "is the same file as --data")),
    Case("partition_out_is_a_data_file", "--out naming another data file", ("partition", "--data", "{data}",
         "--out", "{small}", "--method", "uniform", "--clients", "2"),
         ("is an existing data file", "expected a new path or a partition file to add a group to")),
    Case("stats_plot_is_the_partition_file", "--plot naming the partition file", ("partition-stats", "--data",
         "{data}", "--partition", "{part}", "--plot", "{part}"), ("--plot", "is the same file as --partition")),
    Case("fairness_out_is_its_data", "--out naming the data file", ("fairness", "{run}", "--data", "{data}",
         "--out", "{data}"), ("--out", "is the same file as --data")),
    Case("leaderboard_out_is_a_data_file", "--out naming a data file", ("leaderboard", "{run}", "--out",
         "{data}"), ("is an existing data file", "expected a new path or a file that is not HDF5")),
    Case("leaderboard_plots_is_a_file", "--plots naming an existing file", ("leaderboard", "{run}", "--plots",
         "{text}"), ("--plots", "is an existing file; expected a new path or a directory")),
    Case("leaderboard_out_is_a_directory", "--out naming a directory", ("leaderboard", "{run}", "--out", "{dir}"),
         ("--out", "is an existing directory; expected a new path or a file that is not HDF5")),
    # ------------------------------------------------------------------ fairness metrics on a run they cannot measure
    Case("fairness_flips_on_an_lm_run", "counterfactual flips of an LM run", ("fairness", "{lmrun}", "--data",
         "{small}"), ("is a lm run; --metric flips measures classification runs only",)),
    Case("fairness_sensitivity_on_an_lm_run", "prediction sensitivity of an LM run", ("fairness", "{lmrun}",
         "--metric", "prediction-sensitivity"), ("--metric prediction-sensitivity measures classification runs",)),
    Case("fairness_ceat_without_protected_words", "CEAT on a corpus holding none of a test's words",
         ("fairness", "{lmrun}", "--metric", "ceat", "--data", "{small}"),
         ("no protected words in the data", "none of weat6's male names", "--ceat-tests")),
    Case("fairness_ceat_unknown_test", "--ceat-tests naming no WEAT test of CEAT", ("fairness", "{lmrun}", "--metric",
         "ceat", "--ceat-tests", "weat1"), ("--ceat-tests 'weat1'", "expected a comma-separated list of weat6")),
    # ------------------------------------------------------------------ counterfactual augmentation, distillation
    Case("train_augment_unknown", "--augment naming no augmentation", train("--augment", "mixup"),
         ("--augment must be none or counterfactual, got 'mixup'",)),
    Case("train_augment_fraction_zero", "--augment-fraction outside (0, 1]", train("--augment", "counterfactual",
         "--augment-fraction", "0"), ("--augment-fraction must be in (0, 1], got 0.0",)),
    Case("train_augment_with_dp_sample", "--augment counterfactual with sample-level DP", train(
         "--augment", "counterfactual", "--dp", "sample", "--dp-clip", "1", "--dp-noise-multiplier", "1"),
         ("--augment counterfactual with --dp sample", "use --dp client")),
    Case("centralized_augment_seq2seq", "--augment counterfactual on a seq2seq head", ("centralized", "--data",
         "{seq2seq}", "--model", "tiny-bert", "--augment", "counterfactual", "--steps", "1", "--out", "{out}"),
         ("--augment counterfactual does not support --task seq2seq", "supported: classification, lm")),
    Case("centralized_augment_no_protected_words", "--augment counterfactual on texts without a gendered word",
         ("centralized", "--data", "{small}", "--model", "tiny-bert", "--augment", "counterfactual", "--steps", "1",
          "--out", "{out}"), ("no training text of", "holds a word of the pair list (builtin:gender)")),
    Case("distill_without_teacher", "distill without --teacher", ("distill", "--out", "{out}"),
         ("--teacher RUN_DIR is required",)),
    Case("distill_teacher_not_a_run", "--teacher naming a directory without result.json", ("distill", "--teacher",
         "{dir}", "--out", "{out}"), ("--teacher", "has no result.json")),
    Case("distill_teacher_not_an_lm", "--teacher naming a run that is not a language model", ("distill",
         "--teacher", "{run}", "--out", "{out}"), ("is a task-less run; distillation needs a language-model run",)),
    # ------------------------------------------------------------------ options out of their context (config_checks.CONTEXTS)
    Case("train_dp_epsilon_without_dp", "--dp-epsilon without --dp", train("--dp-epsilon", "2"),
         ("--dp-epsilon 2.0 needs --dp client or --dp sample (this run has --dp none)",)),
    Case("train_dp_noise_cohort_size_without_dp", "--dp-noise-cohort-size without --dp",
         train("--dp-noise-cohort-size", "1000"), ("--dp-noise-cohort-size 1000 needs --dp client",)),
    Case("train_activity_power_with_uniform_sampler", "--activity-power with the uniform sampler",
         train("--activity-power", "0.5"), ("--activity-power 0.5 needs --sampler activity",
                                            "(this run has --sampler uniform)")),
    Case("train_num_beams_on_classification_data", "a seq2seq option on data whose task is classification",
         train("--num-beams", "2"), ("--num-beams 2 needs --task seq2seq",
                                     "(this run has --task classification)")),
    Case("train_dp_noise_cohort_size_negative", "a cohort size below 1 (0 reads the same)",
         train("--dp", "client", "--dp-clip", "1", "--dp-noise-multiplier", "1", "--dp-noise-cohort-size", "-5"),
         ("--dp-noise-cohort-size must be positive, got -5",)),
    # ------------------------------------------------------------------ refused once the data is read: no run directory
    Case("train_continual_without_order_field", "--continual on a data file without an order field",
         train("--continual", "true", "--periods", "2", "--rounds-per-period", "1"),
         ("--continual needs an order or time field",)),
    # ------------------------------------------------------------------ messages that advise what the command takes
    Case("partition_min_examples_keeps_no_one", "--min-examples above every value's count", ("partition", "--data",
         "{small}", "--out", "{out}", "--method", "natural", "--field", "Y", "--min-examples", "1000"),
         ("--min-examples 1000 keeps no value of field 'Y'", "choose --min-examples")),
    Case("partition_natural_wrong_clients", "natural partition with --clients other than the values kept",
         ("partition", "--data", "{small}", "--out", "{out}", "--method", "natural", "--field", "Y", "--clients", "5"),
         ("distinct values over the training examples", "or leave --clients out")),
    # ------------------------------------------------------------------ issue 29's tracebacks, now one line
    Case("audit_model_weights_cut", "a run whose model.safetensors is cut short", ("audit", "{cutmodel}"),
         ("model.safetensors is not a complete safetensors file", "incomplete metadata",
          "expected the weights file save_pretrained writes, whole")),
    Case("stats_plot_without_image_suffix", "--plot whose suffix is no image format", ("partition-stats", "--data",
         "{data}", "--partition", "{part}", "--plot", "{out}.h5"),
         ("a figure's format comes from its file suffix; expected one of", ".pdf, .pgf, .png")),
]


# ------------------------------------------------------------------------------------------------ inputs

CONLL = "EU B-ORG\nrejects O\n\nGerman B-MISC\ncall\n\nPeter B-PER\nBlackburn I-PER\n\nBrussels B-LOC\n"
CSV = "text,label\nfine day,pos\nrain again,\nawful,neg\nsunny,pos\nok,neg\n"
SQUAD = {"version": "1.1", "data": [{"title": "T", "paragraphs": [{"context": "Ada wrote it.", "qas": [
    {"id": "q1", "question": "Who?", "answers": [{"text": "Ada", "answer_start": 0}]},
    {"id": "q2", "question": "Who wrote?", "answers": [{"text": "Ada", "answer_start": 3}]},
    {"id": "q3", "question": "What?", "answers": [{"text": "wrote", "answer_start": 4}]},
    {"id": "q4", "question": "Did she?", "answers": [{"text": "it", "answer_start": 10}]},
]}]}]}


def inputs(root: Path, bbc: tuple[Path, Path]) -> dict[str, Path]:
    """Every placeholder but {out}, as files under root."""
    root.mkdir(parents=True, exist_ok=True)
    paths = {"data": bbc[0], "part": bbc[1], "dir": root / "a_directory", "missing": root / "nothing_here.h5",
             "text": root / "notes.txt", "cut": root / "cut.h5", "run": root / "finished_run",
             "small": root / "small.h5", "seq2seq": root / "seq2seq.h5", "locked": root / "locked.csv",
             "binary": root / "binary.csv", "conll": root / "conll.txt", "squad": root / "squad.json",
             "csv": root / "csv.csv", "foreign": root / "foreign_p.h5", "fractional": root / "fractional_p.h5",
             "untyped": root / "untyped.h5", "lmrun": root / "lm_run",
             "cutmodel": root / "cut_model_run"}
    _fednlp_like_files(bbc[1], paths)
    paths["dir"].mkdir(exist_ok=True)
    paths["text"].write_text("not an HDF5 file\n")
    whole = bbc[0].read_bytes()
    paths["cut"].write_bytes(whole[:len(whole) // 2])
    (paths["run"]).mkdir(exist_ok=True)
    (paths["run"] / "result.json").write_text("{}")
    (paths["lmrun"] / "model").mkdir(parents=True, exist_ok=True)
    (paths["lmrun"] / "result.json").write_text(json.dumps({"task": "lm", "metric": "perplexity"}))
    (paths["lmrun"] / "config.yaml").write_text(json.dumps({"data": str(paths["small"]), "task": "lm"}))
    paths["conll"].write_text(CONLL)
    paths["csv"].write_text(CSV)
    paths["squad"].write_text(json.dumps(SQUAD, indent=1))
    paths["locked"].write_text(CSV)
    paths["locked"].chmod(0)
    paths["binary"].write_bytes(b"text,label\n\xff\xfe,pos\n")
    _cut_model_run(paths["cutmodel"])
    (root / "small.csv").write_text("text,label\n" + "".join(f"text {i},{i % 2}\n" for i in range(20)))
    (root / "seq2seq.jsonl").write_text("".join(json.dumps({"source": f"a b {i}", "target": f"t {i}"}) + "\n"
                                                for i in range(20)))
    for args in (["--dataset", "csv", "--text-column", "text", "--label-column", "label", "--source",
                  str(root / "small.csv"), "--out", str(paths["small"])],
                 ["--dataset", "seq2seq-jsonl", "--source", str(root / "seq2seq.jsonl"),
                  "--out", str(paths["seq2seq"])]):
        assert main(["data", "prepare", *args, "--test-fraction", "0.2"]) == 0
    return paths


def _cut_model_run(run: Path) -> None:
    """A run directory whose weights file was cut short (a full disk, an interrupted copy)."""
    import torch
    from safetensors.torch import save

    (run / "model").mkdir(parents=True, exist_ok=True)
    (run / "result.json").write_text("{}")
    (run / "model" / "model.safetensors").write_bytes(save({"weight": torch.zeros(4)})[:-1])


def _fednlp_like_files(part: Path, paths: dict[str, Path]) -> None:
    """The bbc partition as FedNLP's scripts would have left it, one with a bad index, and an untyped data file."""
    import h5py
    import numpy as np

    from fednlp.data_partition.partition_file import partition_content, read_partition, write_groups

    stored = read_partition(part, METHOD)  # written in FedNLP's layout, a group per client, as its scripts do
    for name in ("foreign", "fractional"):
        write_groups(paths[name], {METHOD: partition_content(stored.train, stored.test, stored.values, "fednlp")})
    with h5py.File(paths["foreign"], "a") as f:
        for key in ("seed", "data_sha256"):
            del f[METHOD][key]
    with h5py.File(paths["fractional"], "a") as f:
        clients = f[METHOD]["partition_data"]["0"]
        train = clients["train"][()].astype(np.float64)
        train[0] = 1.5
        del clients["train"]
        clients["train"] = train
    with h5py.File(paths["untyped"], "w") as f:
        f["attributes"] = json.dumps({"index_list": [0, 1], "label_vocab": {"a": 0, "b": 1}})
        for i, (x, y) in enumerate([("first text", "a"), ("second text", "b")]):
            f[f"X/{i}"], f[f"Y/{i}"] = x, y


def fill(argv: tuple[str, ...], paths: dict[str, Path]) -> list[str]:
    return [re.sub(r"\{(\w+)\}", lambda m: str(paths[m[1]]), arg) for arg in argv]


# ------------------------------------------------------------------------------------------------ tests


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory, bbc: tuple[Path, Path]) -> dict[str, Path]:
    paths = inputs(tmp_path_factory.mktemp("bad_inputs"), bbc)
    yield paths
    paths["locked"].chmod(0o600)


@pytest.mark.parametrize("case", [pytest.param(case, id=case.id, marks=case.marks) for case in CASES])
def test_bad_input_is_one_line_exit_2_and_no_output(case: Case, paths: dict[str, Path], tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    if "{locked}" in case.argv and os.geteuid() == 0:
        pytest.skip("runs as root, whom mode 000 does not stop from reading")
    out = tmp_path / "out"
    run_before = sorted(p.name for p in paths["run"].iterdir())
    code = main(fill(case.argv, {**paths, "out": out}))
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("fednlp: error: "), err
    for words in case.expected:
        assert words in err, (words, err)
    assert sorted(p.name for p in paths["run"].iterdir()) == run_before
    assert (paths["run"] / "result.json").read_text() == "{}"
    assert list(tmp_path.iterdir()) == []  # no output file, no temporary beside it


@pytest.mark.parametrize(
    "dataset, name, extra, location, kept",
    [
        ("conll", "conll", [], "conll.txt:5: expected at least 2 columns, found 1; skipped this sentence", 3),
        ("squad", "squad", [], "question q2: answer 'Ada' does not match the context at 3", 3),
        ("csv", "csv", ["--text-column", "text", "--label-column", "label"],
         "csv.csv:3: row has no label in column 'label'; expected a non-empty label; skipped this row", 4),
    ],
)
def test_bad_records_skip_keeps_the_rest_and_says_so(dataset: str, name: str, extra: list[str], location: str,
                                                     kept: int, paths: dict[str, Path], tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out.h5"
    code = main(["data", "prepare", "--dataset", dataset, "--source", str(paths[name]), *extra, "--test-fraction",
                 "0.5", "--bad-records", "skip", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    warning, total = captured.err.splitlines()
    assert warning.startswith(f"fednlp: warning: {paths[name]}:") and location in warning, warning
    assert total.startswith("fednlp: warning: skipped 1 bad record(s) in all"), total
    data = read_data_file(out)
    assert data.n_examples == kept
    line = int(warning.split(f"{paths[name]}:")[1].split(":")[0])
    assert data.attributes["skipped_records"] == 1
    assert data.attributes["skipped_locations"] == [f"{paths[name].name}:{line}"]  # relative: no local path


def test_squad_bad_record_is_located_at_its_question(paths: dict[str, Path], tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """A SQuAD file is one JSON document (often one line): the line named is where the question's object opens."""
    assert main(["data", "prepare", "--dataset", "squad", "--source", str(paths["squad"]), "--test-fraction", "0.5",
                 "--out", str(tmp_path / "out.h5")]) == 2
    line = int(capsys.readouterr().err.split(f"{paths['squad']}:")[1].split(":")[0])
    assert paths["squad"].read_text().splitlines()[line - 1].strip() == "{"
    assert '"id": "q2"' in paths["squad"].read_text().splitlines()[line]


def test_docs_table_lists_every_case() -> None:
    table = (Path(__file__).resolve().parents[1] / "docs" / "errors.md").read_text()
    for case in CASES:
        assert f"`{case.id}`" in table, case.id
    assert "test_bad_records_skip_keeps_the_rest_and_says_so" in table


# ------------------------------------------------------------------------------------------ the docs table


def _shown(text: str, paths: dict[str, Path]) -> str:
    for name, path in sorted(paths.items(), key=lambda item: -len(str(item[1]))):
        text = text.replace(str(path), "{" + name + "}")
    return text.replace("|", "\\|")


def _row(bad_input: str, argv: list[str], message: str, code: str, test: str) -> str:
    return f"| {bad_input} | `fednlp {' '.join(argv)}` | `{message}` | {code} | `{test}` |"


def write_table() -> None:
    """Run every case and print docs/errors.md."""
    import contextlib
    import io

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        with contextlib.redirect_stdout(io.StringIO()):  # the set-up's "wrote ..." lines are not the table
            paths = inputs(root / "inputs", prepare_bbc(root))
        rows = []
        for case in CASES:
            out = root / "out" / case.id
            every = {**paths, "out": out}
            err = io.StringIO()
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                code = str(main(fill(case.argv, every)))
            message = err.getvalue().strip().removeprefix("fednlp: error: ")
            if "{locked}" in case.argv and os.geteuid() == 0:
                message = "{locked}: cannot read it (Permission denied); expected a readable file"
                code = "2 (expected; not run: root reads a mode-000 file)"
            rows.append(_row(case.bad_input, list(case.argv), _shown(message, every), code, case.id))
        for dataset, name, extra in (("conll", "conll", []), ("squad", "squad", []),
                                     ("csv", "csv", ["--text-column", "text", "--label-column", "label"])):
            argv = ["data", "prepare", "--dataset", dataset, "--source", f"{{{name}}}", *extra, "--test-fraction",
                    "0.5", "--bad-records", "skip", "--out", "{out}"]
            err = io.StringIO()
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                code = main(fill(tuple(argv), {**paths, "out": root / "out" / f"{name}.h5"}))
            message = " / ".join(line.removeprefix("fednlp: warning: ") for line in err.getvalue().splitlines())
            rows.append(_row(f"{PLACEHOLDERS[name]}, `--bad-records skip`", argv,
                             _shown(message, {**paths, "out": root / "out" / f"{name}.h5"}), str(code),
                             f"test_bad_records_skip_keeps_the_rest_and_says_so[{dataset}-...]"))
        rows.append(_locked_run_row(paths, root))
        rows += AUDIT_ROWS + DP_ROWS
        paths["locked"].chmod(0o600)
    print(HEADER.strip() + "\n")
    print("| bad input | command tried | message on stderr (after `fednlp: error: `) | exit code | test |")
    print("|---|---|---|---|---|")
    print("\n".join(rows))
    print("\nPlaceholders:\n")
    print("\n".join(f"- `{{{name}}}`: {what}" for name, what in PLACEHOLDERS.items()))


#: Refusals that need a trained run (or a `{secret}` template, which `fill` would take for a placeholder): their
#: tests live in tests/test_audit_members.py; the rows are written as they are.
AUDIT_ROWS = [
    _row("`--canaries` of an LM run whose seq2seq canaries hold the secret in the target", ["audit", "{run}",
         "--canaries"], "--canaries: the canaries of data file {data} hold their secret in its Y field, which a lm "
         "model never reads (X): the run never saw them; insert canaries for it with: fednlp canaries insert "
         "--task lm", "2", "test_an_lm_run_refuses_seq2seq_canaries_in_the_target_and_scores_those_in_the_source"),
    _row("canaries for a head that cannot read the data file", ["canaries", "insert", "--data", "{seq2seq}", "...",
         "--task", "qa"], "--task qa needs span_extraction data, but data file {seq2seq} holds seq2seq data", "2",
         "test_canaries_insert_for_a_head_that_cannot_read_the_data_is_one_line"),
]


#: A DP run resumed with other accounted options: its test (tests/test_dp_trust.py) needs a finished DP run.
DP_ROWS = [
    _row("a DP run resumed with another round count (calibrated to --dp-epsilon), DP option, cohort size or "
         "sampler", ["train", "--resume", "{run}", "--rounds", "6"], "--resume {run}: a DP run cannot change --rounds "
         "(3 -> 6): its privacy accounting covers the rounds already run with the old value (its noise multiplier "
         "was calibrated to --dp-epsilon for that many rounds); resume with the run's own options or start a new "
         "run", "2", "test_a_calibrated_run_cannot_resume_with_more_rounds_or_other_dp_options"),
]


def _locked_run_row(paths: dict[str, Path], root: Path) -> str:
    """The row of a run directory another run holds (tests/test_reliability.py tests it with two real runs)."""
    import contextlib
    import io
    import subprocess

    out = root / "out" / "locked_run"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from pathlib import Path; "
                               "from fednlp.locks import lock_run_dir; lock_run_dir(Path(sys.argv[1])); "
                               "print('locked', flush=True); time.sleep(600)", str(out)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        argv = list(train("--out", "{out}"))
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(fill(tuple(argv), {**paths, "out": out}))
        message = err.getvalue().strip().removeprefix("fednlp: error: ")
        message = message.replace(f"pid {holder.pid}", "pid {pid}").replace(f"host {socket.gethostname()}", "host {host}")
    finally:
        holder.kill()
        holder.wait()
    return _row("--out held by a run still running", argv, _shown(message, {**paths, "out": out}), str(code),
                "test_a_second_run_on_a_running_runs_directory_is_refused_and_a_killed_one_resumes")


HEADER = """
# Bad input: what fednlp says

Every bad input fednlp has been tried with, the one line it prints on stderr and its exit code. Tests:
`tests/test_errors.py::test_bad_input_is_one_line_exit_2_and_no_output[<id>]` (exit code 2, exactly one line,
the key words of the message, no output file or temporary left behind) unless the row names another test;
the raw-file readers are also fuzzed with generated files (`tests/test_reader_fuzz.py`): they read a file or
refuse it with one such line, never a traceback.

Malformed raw records (`fednlp data prepare --bad-records error|skip`): with `error` (the default) the first
one refuses the whole file, `FILE:LINE: what is wrong; expected what`, and no data file is written. With
`skip` each one is dropped with a warning `FILE:LINE: ...; skipped this <row|line|sentence|question>`,
a final count follows, and the data file's attributes keep `skipped_records` and `skipped_locations`
(FILE:LINE relative to `--source`). A record is never dropped silently. What a record is: a row (CSV, TSV,
SubjQA), a line (JSON Lines, MRQA, line-aligned source/target pairs), a sentence (CoNLL: a bad line drops
its sentence), a question (SQuAD, MRQA), a file (AESLC e-mails, 20 Newsgroups posts, textdir).

FedNLP's own files (written by FedNLP's loaders and partition scripts; `tests/test_fednlp_files.py` runs on
every one in ../shared/data/fednlp-files) are read as they are: README, "FedNLP's files", says exactly what
that covers. What is refused instead: a data file whose task neither `task_type` nor its fields tell
(`partition_data_without_task_type`), and index arrays that are not whole numbers. A partition group is
never replaced by one made otherwise, whether fednlp made it with another seed or FedNLP's scripts wrote it
(they record no seed), unless `fednlp partition --overwrite` says so.

Outputs never destroy a file the user did not ask to lose (`fednlp/files.py` `check_output`; tests:
`tests/test_outputs.py`, which walks every output option of every command). An output that is one of the
command's inputs (the same file after resolving links) is refused, `--overwrite` or not; so is an existing file
of another kind: a data file, partition file or other HDF5 file where a report (table, JSON, figure) is written,
anything but a data file where `data prepare` writes one, anything but a partition file where `partition` or
`canaries insert --out-partition` adds a group, anything but a directory for `leaderboard --plots`. An existing
output of its own kind is written as the command always has: `data prepare` replaces a data file, `partition`
and `canaries insert` add a group to a partition file (a group of the same name made otherwise needs
`--overwrite`), a report replaces a file that is not HDF5, `--plots` adds its figures to a directory;
`canaries insert` refuses any existing `--out-data`.


Exit codes of every fednlp command:

| code | meaning | `fednlp supervise` |
|---|---|---|
| 0 | done | ends |
| 1 | a crash: a bug, or a rank that failed under MPI (its traceback and `fednlp: rank R failed: ...`; the whole job ends) | restarts |
| 2 | bad input: one line `fednlp: error: ...` (this page); nothing written | does not restart (the run's own fault) |
| 3 | a non-finite loss or client update (`--on-nonfinite stop`): one line naming the round, the client and the rank; the last finite checkpoint kept | does not restart (it would diverge again) |
| 128+N | stopped by signal N after checkpointing its last round (130: SIGINT, 143: SIGTERM); continue with `fednlp train --resume RUN_DIR` | restarts after SIGTERM, not after Ctrl-C |
| 137 | killed by SIGKILL (the kernel's OOM killer, a scheduler): no message is possible; the feature cache's size is checked against free memory and disk before tokenizing so that a too large `--max-seq-length` is exit 2 instead | restarts |

`fednlp supervise --max-restarts N -- COMMAND` resumes COMMAND (a `fednlp train` with `--out`, under mpirun or
not) from its newest valid checkpoint, at most N times, each restart logged on stderr and in
`RUN_DIR/restarts.jsonl` (tests: `tests/test_reliability.py::test_supervise_*`). One run at a time per run
directory, data file or partition file: a second command on one is exit 2 naming the holder's pid and host
(an flock, dropped by the kernel when its holder dies, so a killed run never blocks `--resume`).

Generated by `python tests/test_errors.py > docs/errors.md`.
"""

if __name__ == "__main__":
    sys.exit(write_table())
