# shellcheck shell=bash
# Announces the phases of `make run` / `make test` so a person can follow a first
# build, and keeps their durations for a summary. Sourced by scripts/*.sh.
#   phase "building the server" "about 4 min"   -> prints the phase and its usual length
#   phase_summary                               -> prints how long each phase took
# The usual lengths are measured on 2 cores (docs/BENCHMARKS.md, "Fresh clone").

BERTH_PHASES=()
BERTH_PHASE_NAME=
BERTH_PHASE_START=$SECONDS

phase_end() {
  [ -n "$BERTH_PHASE_NAME" ] || return 0
  BERTH_PHASES+=("$(printf '%5ds  %s' $((SECONDS - BERTH_PHASE_START)) "$BERTH_PHASE_NAME")")
  BERTH_PHASE_NAME=
}

phase() {
  local name=$1 usual=${2:-}
  phase_end
  BERTH_PHASE_NAME=$name
  BERTH_PHASE_START=$SECONDS
  if [ -n "$usual" ]; then
    printf '\n\033[1m### %s (%s)\033[0m\n' "$name" "$usual"
  else
    printf '\n\033[1m### %s\033[0m\n' "$name"
  fi
}

phase_summary() {
  phase_end
  [ ${#BERTH_PHASES[@]} -gt 0 ] || return 0
  printf '\nPhase durations:\n'
  printf '  %s\n' "${BERTH_PHASES[@]}"
}
