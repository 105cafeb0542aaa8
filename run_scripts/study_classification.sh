#!/usr/bin/env bash
# The classification study, by the name its first records were launched under (their result.json names this
# script): run_scripts/study.sh with TASK=classification. See run_scripts/study.sh.
TASK=classification exec bash "$(dirname "$0")/study.sh" "$@"
