#!/usr/bin/env bash
# ASR pathways: the generic recipe (what asr.sh is to ESPnet's ASR recipes).
#
# Run from a recipe directory that has conf/, local/data.sh and a path.sh; a recipe's
# run.sh calls this script with its own data sets and language list.  Each stage reads
# the previous stage's output from disk, so any stage can be rerun alone:
#   ./run.sh --stage 11 --stop_stage 13
set -euo pipefail
# One brace group, which bash reads whole before it runs any of it: editing this file
# while a run is going (hours of training) neither changes nor breaks that run (bash reads
# a plain script as it goes; an edit shifted a dev sweep's reads into a syntax error).
{

log() {
  local fname=${BASH_SOURCE[1]##*/}
  echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${fname}:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*"
}
SECONDS=0
help_message="Usage: $0 --languages \"en fr\" --train_set train --valid_set dev --test_sets test [options]
Options (defaults in brackets; see docs/recipe.md):
  --stage/--stop_stage N      stages to run [1/16]; 17 uploads to Hugging Face
  --nj N                      parallel decoding jobs [2]
  --ngpu N                    GPUs for training, 0 = CPU [0]
  --train_jobs N|all          independent trainings of one stage (6, 7, 10, 20) run at once;
                              on the CPU each of k running gets OMP_NUM_THREADS/k threads (at
                              least 1); GPUs are not shared between trainings, so with
                              --ngpu >= 1 it must be 1 [CPU: all (every training of the
                              stage at once); GPU: 1]
  --train_job_mem_mb M        CPU: memory one training takes; a pool starts no more trainings
                              at once than MemAvailable / M (at least 1) [2500: ~2.0 GB
                              measured with conf/train_dense.yaml, trainer + data worker]
  --cpu_ranks N               on the CPU, a training given T >= 2 threads (on 2 cores: a stage's
                              only one) runs as min(N, T) torch DDP ranks (gloo) of T/ranks
                              threads each, started by torch's launcher (torchrun) in ESPnet's
                              external-launcher mode; 1 = one process with T threads [1: on 2
                              cores 2 ranks were 1.04x faster and 2.0 dev CER worse]
  --languages \"l1 l2 ...\"     language codes, order = language ids
  --local_data_opts \"...\"     options for local/data.sh
  --check_splits true|false   stage 1: fail if a dev/test speaker, voice or sentence is in train [true]
  --token_mode shared|merged  one sentencepiece model, or merged per-language pieces [shared]
  --nbpe N                    pieces (per language if merged) [256]
  --dense_config FILE         dense training config
  --decode_config FILE        decoding config (its lm_weight: the LM's weight with --use_lm true)
  --use_lm true|false         stage 3 also trains an RNN LM on the training transcripts
                              (--lm_config), which stage 11 fuses into the beam search [false]
  --lm_per_language true|false  one LM per language (its own transcripts; each utterance is
                              decoded with its language's), or one over all languages [true]
  --lm_config FILE            LM training config (espnet2.bin.lm_train) [conf/train_lm.yaml]
  --systems \"name ...\"        systems trained, decoded, scored and tabulated
                              (e.g. \"dense\": the dense model alone)
                              [dense dense_ft lsp_imp lap pathways_imp pathways_random pathways_dynamic]
                              also available: dense_small lsp_lth pathways_lth
  --target_sparsity S         per-language sparsity of every pruned system [0.7]
  --lsp_prune_every_candidates \"T ...\"  LSP-IMP pruning intervals tried per language, the
                              one with the lowest dev loss kept [\"\": the config's]
  --lsp_prune_every \"L=T ...\"  LSP-IMP pruning interval of language L (steps between rounds;
                              e.g. chosen by a candidates sweep); a language not named keeps
                              --prune_config's, one not in --languages is ignored [\"\"]
  --match_compute true|false  pathway stage, dense_ft and pathways_random take the LSP
                              stage's total steps (false: --pathways_config's) [true]
  --dense_ft_sampling_power B  dense_ft's language sampling power (P(l) ~ (n_l/N)^B), chosen
                              on dev for dense_ft itself; "": --pathways_config's [0.5]
  --random_pruning_fraction P  pathways_random: fraction of the remaining weights each round
                              of random pruning removes [0.7: one round]
  --random_pruning_end F      pathways_random: the rounds are spread over the first F of its
                              steps, then the masks stay fixed (0: at the first steps) [0]
  --random_layer_sparsity lsp_imp|uniform  pathways_random prunes each layer of a language's
                              pathway to its sparsity in that language's LSP-IMP mask (random
                              positions; chosen on dev, conf/tuning/dev_choices.md), or every
                              layer at the global rate [lsp_imp]
  --dynamic_steps N           pathways_dynamic's training steps [\"\": the pathway stage's, as
                              --match_compute gives them]
  --dynamic_init mid|lap      pathways_dynamic starts from the dense model's middle-sparsity
                              magnitude mask, or from the LAP masks (stage 8; chosen on dev,
                              docs/dynamic_pathways.md 4.1) [lap]
  --deploy_max_utts N         stage 16 (fp32 vs int8 table): test utterances per language [40]
  --add_language CODE         stages 18-21: add a language to a trained pathway model
                              (docs/add_language.md); never run by default
  --add_language_mode M       frozen (old pathways bit-identical) or shared, or \"frozen shared\" [frozen]
  --add_language_from SYS     the pathway system grown [pathways_imp]
  --add_language_init_free F  the free weights (outside every old pathway) start from the
                              dense model (dense) or stay zero (zero) [dense]
  --add_language_shared_from L  start the new pathway from old language L's (its shared part
                              kept, only the free weights pruned) ["": all-ones, IMP]
  --add_language_sparsity S   the new pathway's target sparsity; in frozen mode it keeps
                              1-S of the free weights (what it trains) and reads up to 1-S of
                              all weights inside the old union [--target_sparsity]
  --add_language_decode_old_shared B  stage 21 re-decodes the old languages with the
                              shared-mode model too (frozen mode always) [false]
  --add_language_scratch B    also a dense model trained on the new language alone from
                              scratch (random weights), same config and steps [true]
  --add_language_lr \"M=LR ...\"  peak learning rate of each stage-20 training (M: frozen,
                              shared, dense = the baseline, scratch), chosen on the new
                              language's dev set; a training not named keeps its config's
                              [\"frozen=0.008 shared=0.004 dense=0.002 scratch=0.004\": Czech dev]
"

# General
stage=1
stop_stage=16
nj=2
ngpu=0
num_nodes=1
train_jobs=""                # independent trainings of a stage at once: N or all ["": all on the CPU, 1 with GPUs]
cpu_ranks=1                  # CPU: a training given T threads -> min(cpu_ranks, T) gloo DDP ranks
train_job_mem_mb=2500        # CPU: memory of one training; caps a pool at MemAvailable / this
python=python3
cmd_backend=local            # see cmd.sh
expdir=exp
dumpdir=dump
skip_data_prep=false
check_splits=true            # stage 1: fail if a dev/test speaker, voice or sentence is in train
# Data
languages=""
train_set=train
valid_set=dev
test_sets=test
local_data_opts=""
fs=16000
# Tokens
token_mode=shared
nbpe=100
bpe_model_type=unigram
# Training
dense_config=conf/train_dense.yaml
dense_tag=dense
feats_normalize=global_mvn   # global_mvn | causal_mvn (global MVN, then a running per-utterance
                             # mean: streamable, espnet_pathways/normalize.py) | utterance_mvn
train_args=""
inference_model=latest.pth  # the model at the end of its schedule: every config's epochs are chosen on
                            # decoded dev CER (conf/tuning/dense_tuning.md), and the dev loss behind
                            # ESPnet's valid.loss.best.pth disagrees (dense: epoch 5 by loss, 6 by CER)
# Pathways (stages 6-10); systems are named after their exp dirs (exp/asr_<name>)
dense_small_config=conf/train_dense_small.yaml
prune_config=conf/prune_lsp.yaml         # language-specific pruning (one run per language)
lap_config=conf/prune_lap.yaml           # language-agnostic pruning (pooled data)
pathways_config=conf/train_pathways.yaml # joint pathway training from the dense weights;
                                         # also dense_ft and pathways_random (same schedule)
dynamic_config=conf/train_pathways_dynamic.yaml  # dynamic pathways (skipped if absent)
dynamic_steps=""                         # pathways_dynamic's steps; "": the pathway stage's
dynamic_init=lap                         # pathways_dynamic start: lap (stage 8 masks; chosen on dev) | mid (magnitude)
target_sparsity=0.7
lsp_prune_every_candidates=""            # e.g. "20 30 50": LSP-IMP interval chosen on dev
lsp_prune_every=""                       # "lang=T ...": LSP-IMP interval per language (a dev choice); others: --prune_config's
match_compute=true                       # pathway stage steps = the LSP stage's total steps
dense_ft_sampling_power=0.5              # dense_ft's language sampling power beta, chosen on dev for it
                                         # (conf/tuning/dev_choices.md); "": --pathways_config's
random_pruning_fraction=0.7              # pathways_random: fraction removed per round of random pruning
random_pruning_end=0                     # pathways_random: fraction of its steps by which the target is reached
                                         # (0.7 at 0: one random mask per language from the first step; chosen on
                                         # dev against gradual pruning, conf/tuning/dev_choices.md)
random_layer_sparsity=lsp_imp            # pathways_random: per-layer sparsity of each language's LSP-IMP mask | uniform
lth_rewind_step=0                        # LTH: rewind survivors to the dense weights
pruned_inference_model=latest.pth        # pruning runs: the model at the final masks
# Shallow fusion language model (stage 3 trains it, stage 11 fuses it with lm_weight of
# --decode_config; docs/recipe.md, "Language model")
use_lm=false
lm_per_language=true                     # one LM per language, on that language's text
lm_config=conf/train_lm.yaml
lm_inference_model=valid.loss.best.pth   # ESPnet's LM choice: the epoch of lowest dev perplexity
# Decoding
decode_config=conf/decode.yaml
decode_tag=decode_streaming
systems=""
results=""                   # RESULTS.md (with --expdir other than exp: <expdir>/RESULTS.md)
# Packing (stage 15), deployment table (stage 16) and upload (stage 17)
pack_systems="dense pathways_imp"  # packed into exp/asr_<sys>/<sys>.zip (ESPnet's model zip)
pack_compact=true            # store only the weights inside the union + bit-packed masks
deploy_systems="dense pathways_imp"  # stage 16: fp32 vs int8 (size, CER/WER, RTF)
deploy_max_utts=40           # stage 16: test utterances per language (0: all)
deploy_quantize_modules="Linear LSTM"  # stage 16: modules quantized to int8 (ESPnet's option)
hf_repo=""                   # stage 17: Hugging Face repo id, e.g. user/espnet_pathways_4lang
# Adding a language (stages 18-21, only with --add_language; docs/add_language.md)
add_language=""              # code of the new language, e.g. cs
add_language_mode=frozen     # frozen: nothing the old pathways read changes; shared: it may
add_language_from=pathways_imp  # the trained pathway system that is grown
add_language_config=""       # training config of the new pathway [--prune_config: IMP on one language]
add_language_data_opts=""    # local/data.sh options [--langs CODE --out_dir data/lang_CODE]
add_language_baseline=true   # also the dense model fine-tuned on the new language alone
add_language_scratch=true    # also a dense model trained on the new language alone from scratch
add_language_init_free=dense  # free weights of the grown model: dense (the dense model's) or zero
add_language_shared_from=""  # old language whose pathway the new one starts from ["": all-ones]
add_language_sparsity=""     # the new pathway's target sparsity [--target_sparsity]
add_language_decode_old_shared=false  # stage 21: re-decode old languages in shared mode too
add_language_lr="frozen=0.008 shared=0.004 dense=0.002 scratch=0.004"  # stage 20 peak LRs, chosen on Czech dev

. "$(dirname "$0")/utils/parse_options.sh"
[ $# -gt 0 ] && { echo "$0: unexpected arguments: $*" >&2; exit 1; }
[ -z "$languages" ] && { echo "$0: --languages is required" >&2; exit 1; }
[ -f path.sh ] && . ./path.sh
[ -f cmd.sh ] && . ./cmd.sh
if [ -z "$train_jobs" ]; then
  if [ "$ngpu" -gt 0 ]; then train_jobs=1; else train_jobs=all; fi
fi
if [ -n "$dynamic_steps" ] && ! [[ "$dynamic_steps" =~ ^[1-9][0-9]*$ ]]; then
  echo "$0: --dynamic_steps must be a number of steps >= 1 or empty, got '${dynamic_steps}'" >&2; exit 1
fi
if [ -n "$dense_ft_sampling_power" ] && ! [[ "$dense_ft_sampling_power" =~ ^[0-9]+(\.[0-9]+)?$ ]]; then
  echo "$0: --dense_ft_sampling_power must be a number >= 0 or empty, got '${dense_ft_sampling_power}'" >&2; exit 1
fi
[[ "$random_pruning_end" =~ ^(0(\.[0-9]+)?|1(\.0+)?)$ ]] ||
  { echo "$0: --random_pruning_end must be a number in [0, 1], got '${random_pruning_end}'" >&2; exit 1; }
for kv in ${lsp_prune_every}; do
  [[ "$kv" =~ ^[A-Za-z0-9_-]+=[1-9][0-9]*$ ]] ||
    { echo "$0: --lsp_prune_every: '${kv}' is not LANG=STEPS (a positive integer)" >&2; exit 1; }
done
case "$random_layer_sparsity" in lsp_imp|uniform) ;; *)
  echo "$0: --random_layer_sparsity must be lsp_imp or uniform, got '${random_layer_sparsity}'" >&2; exit 1 ;; esac
case "$feats_normalize" in global_mvn|causal_mvn|utterance_mvn|none) ;; *)
  echo "$0: --feats_normalize must be global_mvn, causal_mvn, utterance_mvn or none, got '${feats_normalize}'" >&2; exit 1 ;; esac
case "$train_jobs" in
  all) ;;
  ''|*[!0-9]*|0) echo "$0: --train_jobs must be a positive integer or all, got '${train_jobs}'" >&2; exit 1 ;;
esac
case "$cpu_ranks" in
  ''|*[!0-9]*|0) echo "$0: --cpu_ranks must be a positive integer, got '${cpu_ranks}'" >&2; exit 1 ;;
esac
case "$train_job_mem_mb" in
  ''|*[!0-9]*|0) echo "$0: --train_job_mem_mb must be a positive integer, got '${train_job_mem_mb}'" >&2; exit 1 ;;
esac
for b in use_lm lm_per_language skip_data_prep check_splits match_compute pack_compact add_language_baseline \
         add_language_scratch add_language_decode_old_shared; do  # run as commands below
  case "${!b}" in true|false) ;;
    *) echo "$0: --${b} must be true or false, got '${!b}'" >&2; exit 1 ;;
  esac
done
if [ "$ngpu" -gt 0 ] && [ "$train_jobs" != 1 ]; then
  echo "$0: --train_jobs ${train_jobs} with --ngpu ${ngpu}: GPUs are not shared between" \
       "trainings; use --train_jobs 1" >&2; exit 1
fi
utils=$(cd "$(dirname "$0")" && pwd)/utils
: "${decode_cmd:=${utils}/run_local.sh}"
# The default run compares what the paper's claims need within the CPU budget
# (docs/recipe.md, "Systems"); the others stay available through --systems.
default_systems="${dense_tag} dense_ft lsp_imp lap pathways_imp pathways_random pathways_dynamic"
all_systems="${default_systems} dense_small lsp_lth pathways_lth"
systems=${systems:-$default_systems}
for s in ${systems}; do
  case " ${all_systems} " in *" ${s} "*) ;;
    *) echo "$0: unknown system '${s}' in --systems; known: ${all_systems}" >&2; exit 1 ;;
  esac
done

data_feats=${dumpdir}/raw
if [ "$token_mode" = shared ]; then
  token_dir=data/token_list/bpe_shared${nbpe}; token_type=bpe; text_file=text
  token_args="--token_type bpe --bpemodel ${token_dir}/bpe.model"
else
  token_dir=data/token_list/bpe_merged${nbpe}; token_type=word; text_file=text.pieces
  token_args="--token_type word"
fi
token_list=${token_dir}/tokens.txt
stats_dir=${expdir}/asr_stats_${token_mode}${nbpe}
lm_exp=${expdir}/lm_${token_mode}${nbpe}
times=${expdir}/stage_times.tsv
reused_log=${expdir}/.stage_reused  # a line per training/decoding a stage reused (run_stage)
mkdir -p "$expdir"
# The reports: a scratch --expdir (a sweep, a tuning run) must not rewrite the main run's
# RESULTS.md; RESULTS_add_<code>.md sits beside RESULTS.md.
if [ -z "$results" ]; then
  if [ "$expdir" = exp ]; then results=RESULTS.md; else results=${expdir}/RESULTS.md; fi
fi
add_results() { echo "$(dirname "$results")/RESULTS_add_${add_language}.md"; }

# Run one stage if it is in [stage, stop_stage]; record how long it took.
run_stage() {
  local n=$1 name=$2; shift 2
  if [ "$stage" -le "$n" ] && [ "$stop_stage" -ge "$n" ]; then
    log "Stage ${n}: ${name}"
    local t0=$SECONDS reused=0
    rm -f "$reused_log"
    "$@"
    local dt=$((SECONDS - t0))
    [ -f "$reused_log" ] && reused=$(wc -l <"$reused_log") && rm -f "$reused_log"
    # 5th column: trainings, decodings and statistics found done and not redone (the time is then
    # less than a full run of the stage; the reports say so)
    printf '%s\t%s\t%s\t%s\t%s\n' "$(date '+%F %T')" "$n" "$name" "$dt" "$reused" >>"$times"
    log "Stage ${n} done in ${dt} s$([ "$reused" -gt 0 ] && echo " (${reused} trainings/decodings/statistics found done and reused)")"
    refresh_stage_times "$n"
  fi
}

# A report is written inside a stage, before that stage's time is recorded: once it is,
# the report's timing table is rewritten (RESULTS.md after stages 13-17; the added
# language's section and RESULTS_add_<code>.md after stages 18-21, once they exist).
refresh_stage_times() {
  local n=$1 add; add=$(add_results)
  if [ "$n" -ge 13 ] && [ "$n" -le 17 ] && [ -f "$results" ]; then
    ${python} -m espnet_pathways.bin.refresh_stage_times --stage_times "$times" --results "$results"
  elif [ "$n" -ge 18 ] && [ -n "$add_language" ] && [ -f "$add" ]; then
    ${python} -m espnet_pathways.bin.refresh_stage_times --stage_times "$times" \
      --results "$add" --results "$results" --add_language "$add_language"
  fi
}

# wanted SYSTEM...: true if any of the given systems is in --systems.  Stages 6-10 train
# only what the selected systems need (pathways need the LSP masks they are made of).
wanted() {
  local s
  for s in "$@"; do case " ${systems} " in *" ${s} "*) return 0 ;; esac; done
  return 1
}
# The LSP-IMP masks are needed: for lsp_imp and pathways_imp, and for pathways_random's
# layer-wise sparsity (--random_layer_sparsity lsp_imp).
wants_lsp_imp() {
  wanted lsp_imp pathways_imp || { [ "$random_layer_sparsity" = lsp_imp ] && wanted pathways_random; }
}

skip() { log "skipped: no system in --systems (${systems}) needs it"; }

data_args() {  # --{train,valid}_data_path_and_name_and_type for ESPnet's loader
  local which=$1 dir=$2
  echo "--${which}_data_path_and_name_and_type ${dir}/wav.scp,speech,sound" \
       "--${which}_data_path_and_name_and_type ${dir}/${text_file},text,text" \
       "--${which}_data_path_and_name_and_type ${dir}/utt2lang_id,lang,text_int"
}

# Feature normalisation of every training (asr.sh's --feats_normalize): the ones built on
# global statistics read stage 4's feats_stats.npz.
normalize_args() {
  case "$feats_normalize" in
    global_mvn|causal_mvn)
      echo "--normalize ${feats_normalize} --normalize_conf stats_file=${stats_dir}/train/feats_stats.npz" ;;
    *) echo "--normalize ${feats_normalize}" ;;
  esac
}

common_train_args() {
  echo "--use_preprocessor true ${token_args} --token_list ${token_list}" \
       "--token_mode ${token_mode} --languages ${languages}" \
       "--non_linguistic_symbols none --cleaner none --g2p none --ngpu ${ngpu}"
}

# ------------------------------------------------------------------------------------
stage_data() {
  if "$skip_data_prep"; then log "skip_data_prep=true: using data/ as it is"; return; fi
  local/data.sh ${local_data_opts}
  # Leak check (docs/corpus.md): no dev/test speaker, voice (spk2voice) or sentence in
  # train; run when the data dirs have utt2spk and text (--check_splits false: skip it,
  # e.g. for a corpus that keeps a seen-speaker set or shares short sentences on purpose).
  "$check_splits" || return 0
  local held=() d
  for d in ${valid_set} ${test_sets}; do
    [ -f "data/${d}/utt2spk" ] && [ -f "data/${d}/text" ] && held+=("data/${d}")
  done
  if [ -f "data/${train_set}/utt2spk" ] && [ -f "data/${train_set}/text" ] && [ ${#held[@]} -gt 0 ]; then
    ${python} -m espnet_pathways.bin.check_splits --train "data/${train_set}" --held_out "${held[@]}"
  fi
}

# A data fault (missing/unreadable/stereo audio, no words in the transcript) skips the
# utterance into <dump dir>/bad_utts; a configuration fault (unknown language, wrong
# sampling rate) or too many skips stops here with one line naming the utterance/file.
stage_format() {
  log "Checking and formatting data dirs into ${data_feats} (bad utterances: see bad_utts)"
  ${python} -m espnet_pathways.bin.format_data --languages ${languages} --fs "$fs" \
    --src "data/${train_set}" --dst "${data_feats}/${train_set}" --split_languages true
  ${python} -m espnet_pathways.bin.format_data --languages ${languages} --fs "$fs" \
    --src "data/${valid_set}" --dst "${data_feats}/${valid_set}" --split_languages true
  for t in ${test_sets}; do
    ${python} -m espnet_pathways.bin.format_data --languages ${languages} --fs "$fs" \
      --src "data/${t}" --dst "${data_feats}/${t}" --split_languages true
  done
}

stage_tokens() {
  log "Output vocabulary (${token_mode}, ${nbpe}) -> ${token_dir}"
  ${python} -m espnet_pathways.bin.make_tokens --mode "$token_mode" --vocab_size "$nbpe" \
    --model_type "$bpe_model_type" --text "${data_feats}/${train_set}/text" \
    --utt2lang "${data_feats}/${train_set}/utt2lang" --out_dir "$token_dir" \
    --segment "${data_feats}/${train_set}" "${data_feats}/${valid_set}"
}

# token_shapes STATS_DIR: {train,valid}/text_shape.<token_type>, the text shapes with the
# vocabulary size appended, as asr.sh writes them for ESPnet's batch samplers.
token_shapes() {
  local n s; n=$(wc -l <"$token_list")
  for s in train valid; do
    awk -v N="$n" '{ print $0 "," N }' "${1}/${s}/text_shape" >"${1}/${s}/text_shape.${token_type}"
  done
}

# Shallow fusion LM (--use_lm true): ESPnet's LMTask (espnet2.bin.lm_train, an RNN LM: the
# transducer's beam search fuses only recurrent LMs) on the training transcripts, one line
# per distinct sentence, with the ASR model's own token list so that its scores index the
# same outputs; validated on the dev transcripts.  --lm_per_language true (the default):
# one LM per language, ${lm_exp}_<lang>, on that language's sentences (a shared LM cost the
# smallest language what it gained the others; dense_tuning.md, round 17).  The test text
# is never read.  Each LM is skipped when trained already on the same text, tokens and config.
stage_lm() {
  if ! "$lm_per_language"; then
    if ! lm_done "$lm_exp" "${data_feats}/${train_set}" "${data_feats}/${valid_set}"; then
      lm_text "$lm_exp" "${data_feats}/${train_set}"
      lm_shapes "$lm_exp" "${data_feats}/${valid_set}/${text_file}" "$lm_exp"
      lm_fit "$lm_exp" "${data_feats}/${train_set}" "${data_feats}/${valid_set}"
    fi
    return
  fi
  local l todo=() failed=()
  for l in ${languages}; do
    lm_done "${lm_exp}_${l}" "${data_feats}/${train_set}_${l}" "${data_feats}/${valid_set}_${l}" \
      || { lm_text "${lm_exp}_${l}" "${data_feats}/${train_set}_${l}"; todo+=("$l"); }
  done
  [ ${#todo[@]} -eq 0 ] && return 0
  # One collect_stats for the languages' LMs (an ESPnet process start costs as much CPU
  # as a few epochs of these LMs), its shapes split by the keys of each language's texts.
  local shared=${lm_exp}_stats
  rm -rf "$shared"; mkdir -p "${shared}/data"
  for l in "${todo[@]}"; do cat "${lm_exp}_${l}/data/train_text"; done | sort >"${shared}/data/train_text"
  for l in "${todo[@]}"; do cat "${data_feats}/${valid_set}_${l}/${text_file}"; done \
    | sort >"${shared}/data/valid_text"
  lm_shapes "$shared" "${shared}/data/valid_text" "$shared"
  for l in "${todo[@]}"; do
    local s keys
    for s in train valid; do
      keys=$([ "$s" = train ] && echo "${lm_exp}_${l}/data/train_text" \
                             || echo "${data_feats}/${valid_set}_${l}/${text_file}")
      mkdir -p "${lm_exp}_${l}/stats/${s}"
      awk 'NR == FNR { keep[$1] = 1; next } ($1 in keep)' "$keys" \
        "${shared}/stats/${s}/text_shape.${token_type}" >"${lm_exp}_${l}/stats/${s}/text_shape.${token_type}"
    done
  done
  # On the CPU the languages' LMs train side by side, one thread each: they are small, and
  # their process starts (ESPnet's imports, one core each) are a good part of their time.
  local -A pid_of=()
  for l in "${todo[@]}"; do
    local args=("${lm_exp}_${l}" "${data_feats}/${train_set}_${l}" "${data_feats}/${valid_set}_${l}")
    if [ "$ngpu" -gt 0 ]; then lm_fit "${args[@]}"; continue; fi
    ( export OMP_NUM_THREADS=1; prefixed "lm_${l}" lm_fit "${args[@]}" ) &
    pid_of[$l]=$!
  done
  for l in "${!pid_of[@]}"; do wait "${pid_of[$l]}" || failed+=("$l"); done
  [ ${#failed[@]} -eq 0 ] && return 0
  echo "$0: LM training failed for language(s) ${failed[*]}; see ${lm_exp}_<lang>/train.log" >&2
  exit 1
}

# lm_signature TRAIN_DATA VALID_DATA: what an LM is trained from (config, texts, tokens)
lm_signature() {
  cat "$lm_config" "${1}/${text_file}" "${2}/${text_file}" "$token_list" | md5sum | cut -c1-32
}

# lm_done DIR TRAIN_DATA VALID_DATA: true (with a log line) when DIR holds an LM trained
# on the same text, tokens and config
lm_done() {
  [ -f "${1}/.done" ] && [ "$(cat "${1}/.done")" = "$(lm_signature "$2" "$3")" ] || return 1
  log "LM: already trained with this config and text (${1}); skipping"
  echo "lm ${1##*/}" >>"$reused_log"
}

# lm_text DIR TRAIN_DATA: a fresh DIR with data/train_text, one utterance per distinct
# sentence (the corpus speaks each with several voices)
lm_text() {
  local dir=$1 train=$2
  rm -rf "$dir"; mkdir -p "${dir}/data"
  sort -k2 "${train}/${text_file}" \
    | awk '{ k = $1; $1 = ""; if (!(($0) in seen)) { seen[$0] = 1; print k $0 } }' \
    | sort >"${dir}/data/train_text"
}

# lm_shapes DIR VALID_TEXT OUT: ESPnet's collect_stats of the LM task on DIR/data/train_text
# and VALID_TEXT -> OUT/stats/{train,valid}/text_shape.<token_type>
lm_shapes() {
  local dir=$1 valid_text=$2 out=$3
  ${python} -m espnet2.bin.lm_train --collect_stats true $(lm_args) \
    --train_data_path_and_name_and_type "${dir}/data/train_text,text,text" \
    --valid_data_path_and_name_and_type "${valid_text},text,text" \
    --train_shape_file "${dir}/data/train_text" --valid_shape_file "$valid_text" \
    --output_dir "${out}/stats" >"${out}/collect_stats.log" 2>&1 \
    || { tail -n 20 "${out}/collect_stats.log"; exit 1; }
  token_shapes "${out}/stats"
}

lm_args() {
  echo --use_preprocessor true ${token_args} --token_list "$token_list" \
    --non_linguistic_symbols none --cleaner none --g2p none --ngpu "$ngpu" --config "$lm_config"
}

# lm_fit DIR TRAIN_DATA VALID_DATA: train the LM of DIR (lm_text and lm_shapes done)
lm_fit() {
  local dir=$1 train=$2 valid=$3
  log "LM: $(wc -l <"${dir}/data/train_text") distinct training sentences of ${train}, ${lm_config} -> ${dir} (log: ${dir}/train.log)"
  ${python} -m espnet2.bin.lm_train $(lm_args) \
    --train_data_path_and_name_and_type "${dir}/data/train_text,text,text" \
    --valid_data_path_and_name_and_type "${valid}/${text_file},text,text" \
    --train_shape_file "${dir}/stats/train/text_shape.${token_type}" \
    --valid_shape_file "${dir}/stats/valid/text_shape.${token_type}" \
    --output_dir "$dir" >"${dir}/train.log" 2>&1 || { tail -n 20 "${dir}/train.log"; exit 1; }
  lm_signature "$train" "$valid" >"${dir}/.done"
}

# lm_dirs: the LM exp dirs stage 3 trains; lm_dir_arg: the one the decoder and packer take
# (per language: ${lm_exp}_{lang}, {lang} standing for each utterance's language).
lm_dirs() {
  if "$lm_per_language"; then local l; for l in ${languages}; do echo "${lm_exp}_${l}"; done
  else echo "$lm_exp"; fi
}
lm_dir_arg() { if "$lm_per_language"; then echo "${lm_exp}_{lang}"; else echo "$lm_exp"; fi; }

stage_vocabulary() {
  stage_tokens
  if "$use_lm"; then stage_lm; fi
}

# Skipped when done already for the same data lists, lengths, tokens and config (a rerun
# of the whole recipe: ESPnet's collect_stats reads every utterance, ~1 minute).  The
# audio is known by its wav.scp paths and lengths (the corpus builder writes each build
# version under its own directory).
stats_signature() {
  local d lang files=("$dense_config" "$token_list")
  for d in "${data_feats}/${train_set}" "${data_feats}/${valid_set}"; do
    files+=("${d}/wav.scp" "${d}/${text_file}" "${d}/utt2lang_id" "${d}/utt2num_samples")
  done
  for lang in ${languages}; do
    files+=("${data_feats}/${train_set}_${lang}/utt2lang" "${data_feats}/${valid_set}_${lang}/utt2lang")
  done
  { echo "$(common_train_args)"; md5sum "${files[@]}"; } | md5sum | cut -c1-32
}

stage_stats() {
  local sig; sig=$(stats_signature)
  if [ -f "${stats_dir}/.done" ] && [ "$(cat "${stats_dir}/.done")" = "$sig" ]; then
    log "feature statistics: done already for these data, tokens and config (${stats_dir}); skipping"
    echo stats >>"$reused_log"; return
  fi
  rm -f "${stats_dir}/.done"
  log "Collecting feature statistics and shapes -> ${stats_dir}"
  ${python} -m espnet_pathways.bin.asr_pathways_train --collect_stats true \
    $(common_train_args) --config "$dense_config" \
    $(data_args train "${data_feats}/${train_set}") \
    $(data_args valid "${data_feats}/${valid_set}") \
    --train_shape_file "${data_feats}/${train_set}/utt2num_samples" \
    --valid_shape_file "${data_feats}/${valid_set}/utt2num_samples" \
    --output_dir "$stats_dir" >"${expdir}/collect_stats.log" 2>&1 \
    || { tail -n 20 "${expdir}/collect_stats.log"; exit 1; }
  token_shapes "$stats_dir"
  # Per-language shape files, for training on one language's data (LSP).
  for lang in ${languages}; do
    for s in train valid; do
      local set=$([ "$s" = train ] && echo "$train_set" || echo "$valid_set")
      mkdir -p "${stats_dir}/${s}_${lang}"
      for f in speech_shape "text_shape.${token_type}"; do
        awk 'NR == FNR { keep[$1] = 1; next } ($1 in keep)' \
          "${data_feats}/${set}_${lang}/utt2lang" "${stats_dir}/${s}/${f}" >"${stats_dir}/${s}_${lang}/${f}"
      done
    done
  done
  echo "$sig" >"${stats_dir}/.done"
}

# train_signature CONFIG [args...]: what a finished run's .done holds (config, arguments,
# language subset, and the contents of the files among the arguments: the model it starts
# from, its masks); a changed one means "train again" (resuming).  The contents count so
# that a rerun of an earlier stage (a new dense model, new LSP masks) retrains what starts
# from it, although its command line is the same.
train_signature() {
  local config=$1; shift
  local a inputs=()
  for a in "$@"; do if [ -f "$a" ]; then inputs+=("$a"); fi; done
  # The default normalisation adds nothing: runs finished before --feats_normalize
  # existed (global MVN, the only one then) stay done.
  local norm=""; [ "$feats_normalize" = global_mvn ] || norm=" $(normalize_args)"
  { cat "$config"; echo "$* ${sub:-} ${train_args} $(common_train_args)${norm}"
    if [ ${#inputs[@]} -gt 0 ]; then md5sum "${inputs[@]}"; fi; } | md5sum | cut -c1-32
}

# trained_already TAG CONFIG [args...]: true if exp/asr_TAG finished with this signature.
trained_already() {
  local dir=${expdir}/asr_$1 config=$2; shift 2
  [ -f "${dir}/.done" ] && [ "$(cat "${dir}/.done")" = "$(train_signature "$config" "$@")" ]
}

# train_system TAG CONFIG [extra ESPnet args...]: skipped when already done with the
# same config and arguments (a rerun trains only what changed); resumes otherwise, as
# ESPnet does (a larger max_epoch continues the run).  When the run had finished with
# other options and ESPnet, resuming it, trains nothing ("already reached at max_epoch":
# say a new learning rate), the old run is moved to asr_TAG.old (replacing an earlier
# one) and the training starts afresh, instead of marking the old model done.
# With sub=_<lang> set, trains on that language's data only.
# skip_trained TAG DIR: TAG is trained already; say so and record it for the stage's
# time (run_stage: a stage that reused work took less than it costs).
skip_trained() {
  log "$1: already trained with this config (${2}); skipping"; echo "$1" >>"$reused_log"
}

train_system() {
  local tag=$1 config=$2; shift 2
  local dir=${expdir}/asr_${tag} sub=${sub:-}
  local sig; sig=$(train_signature "$config" "$@")
  if trained_already "$tag" "$config" "$@"; then
    skip_trained "$tag" "$dir"; return
  fi
  local finished_as="" log_lines=0
  [ -f "${dir}/.done" ] && finished_as=$(cat "${dir}/.done")
  [ -f "${dir}/train.log" ] && log_lines=$(wc -l <"${dir}/train.log")
  mkdir -p "$dir"
  log "${tag}: training with ${config} -> ${dir} (log: ${dir}/train.log)"
  # Several GPUs (one node or many): torch DDP, one process per GPU, through ESPnet's
  # launcher as asr.sh does (it writes train.log itself, moving an earlier one to
  # train.1.log, ...; its own output -> launch.log).
  local launcher=() out_log="${dir}/train.log" ranks_args=() ranks
  ranks=$(cpu_ddp_ranks)
  if [ "$num_nodes" -gt 1 ] || [ "$ngpu" -gt 1 ]; then
    launcher=(${python} -m espnet2.bin.launch --cmd "${cuda_cmd:-$decode_cmd}"
              --log "${dir}/train.log" --ngpu "$ngpu" --num_nodes "$num_nodes"
              --init_file_prefix "${dir}/.dist_init_" --multiprocessing_distributed true --)
    out_log="${dir}/launch.log"
  elif [ "$ranks" -gt 1 ]; then
    # CPU DDP (docs/recipe.md, "CPU DDP"): ESPnet's launcher starts CPU ranks only over
    # ssh/mpirun/srun, so torch's own launcher starts them on this machine and ESPnet
    # joins them as with any external launcher (RANK/WORLD_SIZE from the environment).
    local per_rank=$((${OMP_NUM_THREADS:-1} / ranks))
    log "${tag}: ${ranks} gloo DDP ranks of ${per_rank} thread(s) each (--cpu_ranks)"
    launcher=(env OMP_NUM_THREADS=$per_rank ${python} -m torch.distributed.run --standalone --nnodes 1
              --nproc_per_node "$ranks" --no-python)
    ranks_args=(--multiprocessing_distributed false --dist_backend gloo)
  fi
  # shellcheck disable=SC2046,SC2206
  local cmd=("${launcher[@]}" ${python} -m espnet_pathways.bin.asr_pathways_train
      --config "$config" $(common_train_args)
      $(data_args train "${data_feats}/${train_set}${sub}")
      $(data_args valid "${data_feats}/${valid_set}${sub}")
      --train_shape_file "${stats_dir}/train${sub}/speech_shape"
      --train_shape_file "${stats_dir}/train${sub}/text_shape.${token_type}"
      --valid_shape_file "${stats_dir}/valid${sub}/speech_shape"
      --valid_shape_file "${stats_dir}/valid${sub}/text_shape.${token_type}"
      $(normalize_args)
      --resume true --output_dir "$dir" "${ranks_args[@]}" ${train_args} "$@")
  # A rerun (resume after a crash, or a changed config) appends to the log after a line
  # naming the date and command: the earlier epochs' history is never truncated.
  printf '\n===== %s: %s =====\n' "$(date '+%F %T')" "${cmd[*]}" >>"${out_log}"
  if ! "${cmd[@]}" >>"${out_log}" 2>&1; then
    tail -n 30 "${dir}/train.log" >&2
    log "${tag}: training failed; see ${dir}/train.log (rerun resumes from the last epoch)"
    exit 1
  fi
  [ "$out_log" = "${dir}/train.log" ] || log_lines=0  # ESPnet's launcher starts a new log
  if [ -n "$finished_as" ] && [ "$finished_as" != "$sig" ] &&
     tail -n +"$((log_lines + 1))" "${dir}/train.log" | grep -q "already reached at max_epoch"; then
    rm -rf "${dir}.old" && mv "$dir" "${dir}.old"
    log "${tag}: ${dir} had finished with other options and resuming it trained nothing;" \
        "moved to ${dir}.old, training afresh"
    train_system "$tag" "$config" "$@"; return
  fi
  # The last epochs' results, also when this run only found the training finished (with
  # ESPnet's launcher, the earlier ones are in train.<N>.log, oldest the highest N).
  local logs=() i=1
  while [ -f "${dir}/train.${i}.log" ]; do logs=("${dir}/train.${i}.log" "${logs[@]}"); i=$((i + 1)); done
  cat "${logs[@]}" "${dir}/train.log" | grep -E "[0-9]+epoch results:" | tail -n 2 || true
  echo "$sig" >"${dir}/.done"
}

# cpu_ddp_ranks: the DDP ranks of a CPU training given OMP_NUM_THREADS threads (at most
# --cpu_ranks; docs/recipe.md, "CPU DDP").  1 on GPUs and across nodes.
cpu_ddp_ranks() {
  local threads=${OMP_NUM_THREADS:-1}
  if [ "$ngpu" -gt 0 ] || [ "$num_nodes" -gt 1 ]; then echo 1; return; fi
  echo $((cpu_ranks < threads ? cpu_ranks : threads))
}

# Independent trainings of one stage run side by side (--train_jobs; docs/recipe.md,
# "Parallel trainings"): on 2 CPU cores two 1-thread trainings give ~1.5x the throughput
# of one 2-thread training.  On the CPU all of a stage's trainings start at once (more
# processes than cores): a training's threads are fixed when it starts, so in waves the
# last one of three would run alone on 1 of 2 cores.  A stage queues its trainings with
# queue_training (the arguments of train_system, `sub` included) and runs them with
# run_queued_trainings (stage 20 inside add_env, which both see).
queued=()       # the queued trainings' train_system arguments, each list shell-quoted
queued_subs=()  # and their `sub` (the language whose data alone they train on)

queue_training() {  # queue_training TAG CONFIG [args...]
  queued+=("$(printf '%q ' "$@")"); queued_subs+=("${sub:-}")
}

# prefixed NAME CMD...: CMD with "[NAME] " before each line of its stdout and stderr (each
# kept on its own stream), so that the lines of concurrent trainings stay attributable.
prefixed() {
  local p="[$1] "; shift
  { "$@" 2>&1 1>&3 3>&- | sed -u "s|^|${p}|" >&2; } 3>&1 | sed -u "s|^|${p}|"
}

# memory_cap N: lowers the caller's `max` (trainings at once, of N) on the CPU to those
# that fit in MemAvailable at --train_job_mem_mb each (at least 1), with a log line.  Too
# many at once swap (session 8: ten 2-GB trainings on 24 GB thrashed) or are OOM-killed.
memory_cap() {
  local n=$1 avail fit
  avail=$(awk '/^MemAvailable:/ { print int($2 / 1024) }' /proc/meminfo 2>/dev/null)
  [ "$ngpu" -eq 0 ] && [ -n "$avail" ] && [ "$max" -gt 1 ] || return 0
  fit=$((avail / train_job_mem_mb)); [ "$fit" -ge 1 ] || fit=1
  if [ "$fit" -lt "$max" ]; then
    log "memory: ${avail} MB available, ~${train_job_mem_mb} MB a training (--train_job_mem_mb): at most ${fit} of ${n} at once"
    max=$fit
  fi
}

# run_queued_trainings: the queued trainings not done already, up to --train_jobs (all:
# every one) at a time (bash jobs and `wait -n`).  With k of them running at once on the
# CPU (k = min(train_jobs, trainings of the stage not finished)) each gets max(1, OMP_NUM_THREADS
# / k) threads, so a stage's last or only training keeps all of them.  When one fails, no
# further training starts, those running are waited for (a finished one writes its
# .done, so a rerun trains only the others), the failed ones are named with their log,
# and the script exits 1.
run_queued_trainings() {
  local todo=() i job=()
  for i in "${!queued[@]}"; do
    eval "job=(${queued[i]})"
    if sub=${queued_subs[i]} trained_already "${job[@]}"; then
      skip_trained "${job[0]}" "${expdir}/asr_${job[0]}"
    else
      todo+=("$i")
    fi
  done
  local n=${#todo[@]} max=$train_jobs all_threads=${OMP_NUM_THREADS:-1}
  [ "$max" != all ] && [ "$max" -le "$n" ] || max=$n
  memory_cap "$n"
  local next=0 running=0 finished=0 failed=() k threads pid
  local -A tag_of=()
  while :; do
    while [ "$running" -lt "$max" ] && [ ${#failed[@]} -eq 0 ] && [ "$next" -lt "$n" ]; do
      i=${todo[next]}; next=$((next + 1))
      eval "job=(${queued[i]})"
      k=$((n - finished < max ? n - finished : max)); threads=$all_threads
      [ "$ngpu" -gt 0 ] || threads=$((all_threads / k > 1 ? all_threads / k : 1))
      [ "$n" -le 1 ] || log "${job[0]}: starting ($((running + 1)) of at most ${max} at once, ${threads} thread(s))"
      ( export OMP_NUM_THREADS=$threads; sub=${queued_subs[i]}
        prefixed "${job[0]}" train_system "${job[@]}" ) &
      tag_of[$!]=${job[0]}; running=$((running + 1))
    done
    [ "$running" -gt 0 ] || break
    if ! wait -n -p pid; then failed+=("${tag_of[$pid]}"); fi
    running=$((running - 1)); finished=$((finished + 1))
  done
  queued=(); queued_subs=()
  [ ${#failed[@]} -eq 0 ] && return 0
  for i in "${failed[@]}"; do
    echo "$0: training ${i} failed; see ${expdir}/asr_${i}/train.log" >&2
  done
  [ "$next" -ge "$n" ] || echo "$0: $((n - next)) training(s) of this stage not started;" \
    "the finished ones are kept: a rerun trains only the failed and unstarted ones" >&2
  exit 1
}

stage_train_dense() {
  train_system "$dense_tag" "$dense_config"
}

dense_model() { echo "${expdir}/asr_${dense_tag}/${inference_model}"; }

# config_value FILE KEY: a top-level value of a YAML config (empty if absent).
config_value() {
  ${python} -c 'import sys, yaml; v = (yaml.safe_load(open(sys.argv[1])) or {}).get(sys.argv[2]); print("" if v is None else v)' "$1" "$2"
}

# Compute matching: the pathway stage (and dense_ft, pathways_random) takes as many
# optimizer steps as the LSP stage adds in all: (number of languages) x (steps of one LSP
# run = num_iters_per_epoch x max_epoch of --prune_config).  Each run keeps its config's
# max_epoch and LR schedule; num_iters_per_epoch is set to reach that total.
matched_steps() {
  local iters epochs n
  iters=$(config_value "$prune_config" num_iters_per_epoch)
  epochs=$(config_value "$prune_config" max_epoch)
  [ -n "$iters" ] && [ -n "$epochs" ] || {
    echo "$0: ${prune_config} needs num_iters_per_epoch and max_epoch (the LSP steps the" \
         "pathway stage is matched to)" >&2; exit 1; }
  n=$(echo ${languages} | wc -w)
  echo $((n * iters * epochs))
}

# pathway_steps: the steps of a run of --pathways_config (matched, or its config's).
pathway_steps() {
  if "$match_compute"; then matched_steps; return; fi
  local iters epochs
  iters=$(config_value "$pathways_config" num_iters_per_epoch)
  epochs=$(config_value "$pathways_config" max_epoch)
  [ -n "$iters" ] && [ -n "$epochs" ] || {
    echo "$0: ${pathways_config} needs num_iters_per_epoch and max_epoch" >&2; exit 1; }
  echo $((iters * epochs))
}

# steps_args TOTAL: --num_iters_per_epoch for a run of --pathways_config of TOTAL steps
# (rounded up to whole epochs)
steps_args() {
  local epochs; epochs=$(config_value "$pathways_config" max_epoch)
  [ -n "$epochs" ] || { echo "$0: ${pathways_config} needs max_epoch" >&2; exit 1; }
  echo "--num_iters_per_epoch $(( ($1 + epochs - 1) / epochs ))"
}

matched_args() {  # --num_iters_per_epoch for a run of --pathways_config
  "$match_compute" || return 0
  local total; total=$(matched_steps)
  steps_args "$total"
}

# Dense baselines beside the dense model: dense_ft (the dense model continued on the
# pooled data for the pathway stage's steps and schedule: --pathways_config without
# masks, with its own language sampling power --dense_ft_sampling_power) and dense_small
# (about as many parameters as one pathway).
stage_train_dense_baselines() {
  wanted dense_ft dense_small || { skip; return; }
  if wanted dense_ft; then
    local match; match=$(matched_args)  # (an assignment: a failure stops the script)
    local power=()  # its own language balance, chosen on dev for dense_ft
    [ -n "$dense_ft_sampling_power" ] && power=(--language_sampling_power "$dense_ft_sampling_power")
    queue_training dense_ft "$pathways_config" --init_param "$(dense_model)" ${match} "${power[@]}"
  fi
  if wanted dense_small; then queue_training dense_small "$dense_small_config"; fi
  run_queued_trainings
}

# lsp_imp_dirs: the LSP-IMP runs behind exp/asr_lsp_imp_<lang> (all sweep candidates).
lsp_runs() {
  local kind=$1 lang=$2
  if [ "$kind" = imp ] && [ -n "$lsp_prune_every_candidates" ]; then
    for t in ${lsp_prune_every_candidates}; do echo "asr_lsp_imp_${lang}_every${t}"; done
  else
    echo "asr_lsp_${kind}_${lang}"
  fi
}

# lsp_every_args LANG: "--pruning_every T" when --lsp_prune_every names LANG.
lsp_every_args() {
  local kv
  for kv in ${lsp_prune_every}; do
    if [ "${kv%%=*}" = "$1" ]; then echo "--pruning_every ${kv#*=}"; return; fi
  done
}

# Language-specific pruning: IMP (and LTH) of the dense model on each language alone.
# With --lsp_prune_every_candidates, IMP runs once per interval and language, and
# exp/asr_lsp_imp_<lang> links to the run with the lowest dev loss at its final masks
# (the choices: exp/lsp_prune_every.tsv).
stage_lsp() {
  wants_lsp_imp || wanted lsp_lth pathways_lth || { skip; return; }
  local prune="--init_param $(dense_model) --pruning_target_sparsity ${target_sparsity}"
  # All runs of all languages are independent: one pool; the interval choice after it.
  for lang in ${languages}; do
    if wants_lsp_imp && [ -z "$lsp_prune_every_candidates" ]; then
      # shellcheck disable=SC2046
      sub=_${lang} queue_training "lsp_imp_${lang}" "$prune_config" ${prune} \
        --pruning imp --pruning_languages "$lang" $(lsp_every_args "$lang")
    elif wants_lsp_imp; then
      for t in ${lsp_prune_every_candidates}; do
        sub=_${lang} queue_training "lsp_imp_${lang}_every${t}" "$prune_config" ${prune} \
          --pruning imp --pruning_languages "$lang" --pruning_every "$t"
      done
    fi
    if wanted lsp_lth pathways_lth; then
      sub=_${lang} queue_training "lsp_lth_${lang}" "$prune_config" ${prune} \
        --pruning lth --lth_rewind_step "$lth_rewind_step" --pruning_languages "$lang"
    fi
  done
  run_queued_trainings
  if [ -n "$lsp_prune_every_candidates" ] && wants_lsp_imp; then
    : >"${expdir}/lsp_prune_every.tsv.tmp"
    for lang in ${languages}; do
      local cands=() best link=${expdir}/asr_lsp_imp_${lang}
      for t in ${lsp_prune_every_candidates}; do cands+=("${expdir}/asr_lsp_imp_${lang}_every${t}"); done
      best=$(${python} -m espnet_pathways.bin.select_on_dev --epoch last \
        --table "${expdir}/lsp_prune_every_${lang}.tsv" "${cands[@]}")
      if [ -d "$link" ] && [ ! -L "$link" ]; then
        echo "$0: ${link} is a run of its own; remove it to use the interval sweep" >&2; exit 1
      fi
      ln -sfn "$(basename "$best")" "$link"
      printf '%s\t%s\n' "$lang" "${best##*_every}" >>"${expdir}/lsp_prune_every.tsv.tmp"
      log "LSP-IMP ${lang}: pruning interval ${best##*_every} chosen on dev (${expdir}/lsp_prune_every_${lang}.tsv)"
    done
    mv "${expdir}/lsp_prune_every.tsv.tmp" "${expdir}/lsp_prune_every.tsv"
  fi
  return 0
}

# Language-agnostic pruning: IMP on the pooled data, one mask shared by all languages.
stage_lap() {
  wanted lap || { [ "$dynamic_init" = lap ] && wanted pathways_dynamic; } || { skip; return; }
  train_system lap "$lap_config" --init_param "$(dense_model)" --pruning imp \
    --pruning_shared true --pruning_target_sparsity "${target_sparsity}"
}

# Mask sets for pathway training: the LSP masks combined, and their overlap.
stage_masks() {
  wants_lsp_imp || wanted lsp_lth pathways_lth || { skip; return; }
  local m=${expdir}/masks; mkdir -p "$m"
  for kind in imp lth; do
    if [ $kind = imp ]; then wants_lsp_imp || continue; else wanted lsp_lth pathways_lth || continue; fi
    local specs=()
    for lang in ${languages}; do specs+=("${lang}=${expdir}/asr_lsp_${kind}_${lang}/masks.pth"); done
    ${python} -m espnet_pathways.bin.pathway_masks combine --out "${m}/lsp_${kind}.pth" "${specs[@]}"
  done
  if [ -f "${m}/lsp_imp.pth" ]; then
    ${python} -m espnet_pathways.bin.pathway_masks inspect "${m}/lsp_imp.pth" \
      --overlap_json "${m}/overlap.json" | tee "${m}/lsp_imp.summary.txt"
  fi
}

# Pathway training: dense weights, per-language masks, all languages jointly, for the
# LSP stage's total steps.  pathways_random: the same run from the dense model with
# each language's mask made by random pruning (--pruning random: rounds of
# --random_pruning_fraction spread over the first --random_pruning_end of the steps, by
# default one round at the first step; each layer at its sparsity in the language's LSP
# mask with --random_layer_sparsity lsp_imp), then fixed masks: a trained sparse network
# with the same steps and schedule.
stage_pathways() {
  wanted pathways_imp pathways_lth pathways_random pathways_dynamic || { skip; return; }
  local match total; match=$(matched_args); total=$(pathway_steps)
  for kind in imp lth; do
    wanted "pathways_${kind}" || continue
    queue_training "pathways_${kind}" "$pathways_config" --init_param "$(dense_model)" \
      --pathway_masks "${expdir}/masks/lsp_${kind}.pth" ${match}
  done
  if wanted pathways_random; then
    local rounds every plan  # the rounds spread over the first --random_pruning_end of the steps
    plan=$(${python} -c 'import sys; from espnet_pathways.pruning import IMPSchedule
n = IMPSchedule(float(sys.argv[1]), float(sys.argv[2]), 1).num_rounds
print(n, max(1, int(float(sys.argv[3]) * int(sys.argv[4]) / n)))' \
      "$target_sparsity" "$random_pruning_fraction" "$random_pruning_end" "$total")
    read -r rounds every <<<"$plan"
    log "pathways_random: ${rounds} rounds of random pruning every ${every} of ${total} steps"
    local layers=()
    case "$random_layer_sparsity" in
      lsp_imp) layers=(--random_layer_sparsity_from "${expdir}/masks/lsp_imp.pth") ;;
      uniform) ;;
    esac
    queue_training pathways_random "$pathways_config" --init_param "$(dense_model)" \
      --pruning random --pruning_target_sparsity "$target_sparsity" \
      --pruning_fraction "$random_pruning_fraction" --pruning_every "$every" ${match} "${layers[@]}"
  fi
  if wanted pathways_dynamic; then queue_dynamic "$match"; fi
  run_queued_trainings
}

# Dynamic ASR pathways (docs/dynamic_pathways.md), trained only when its config exists.
# The config holds only overrides (--pruning dynamic and its options) on top of
# --pathways_config, so the model, steps and language sampling are the fixed pathway
# run's; it starts from the dense weights and (--dynamic_init lap) the LAP masks.  The
# final masks are exp/asr_pathways_dynamic/masks.pth (used with latest.pth, like a
# pruning run's).  queue_dynamic MATCHED_ARGS: queues it for run_queued_trainings.
queue_dynamic() {
  if [ ! -f "$dynamic_config" ]; then
    log "pathways_dynamic: no ${dynamic_config}; not trained (and not decoded or reported)"
    return
  fi
  local overrides start=() steps=$1
  overrides=$(${python} -m espnet_pathways.bin.dynamic_overrides "$dynamic_config") || exit 1
  if [ -n "$dynamic_steps" ]; then steps=$(steps_args "$dynamic_steps"); fi
  case "$dynamic_init" in
    mid) ;;
    lap) start=(--pathway_masks "${expdir}/asr_lap/masks.pth") ;;
    *) echo "$0: --dynamic_init must be mid or lap, got ${dynamic_init}" >&2; exit 1 ;;
  esac
  # shellcheck disable=SC2086
  queue_training pathways_dynamic "$pathways_config" --init_param "$(dense_model)" \
    --pruning_target_sparsity "$target_sparsity" ${overrides} ${steps} "${start[@]}"
}

# The systems of --systems that have a model: pathways_dynamic is optional (see above).
trained_systems() {
  local s out=()
  for s in ${systems}; do
    if [ "$s" = pathways_dynamic ] && [ ! -f "${expdir}/asr_${s}/.done" ]; then continue; fi
    out+=("$s")
  done
  echo "${out[*]}"
}

# compute_sources SYSTEM: the training runs (exp dir names, siblings in ${expdir}) whose
# compute.json counts toward SYSTEM: the dense model and every run after it.
compute_sources() {
  local s=$1 lang kind
  if [ "$s" = dense_small ]; then echo asr_dense_small; return; fi  # trained from scratch
  echo "asr_${dense_tag}"
  case "$s" in
    "${dense_tag}") ;;
    lsp_imp|lsp_lth|pathways_imp|pathways_lth)
      kind=${s#*_}
      for lang in ${languages}; do lsp_runs "$kind" "$lang"; done
      case "$s" in pathways_*) echo "asr_${s}" ;; esac ;;
    pathways_dynamic)
      # started from the LAP mask: LAP's steps count too
      if grep -q "asr_lap/" "${expdir}/asr_${s}/config.yaml" 2>/dev/null; then echo asr_lap; fi
      echo "asr_${s}" ;;
    *) echo "asr_${s}" ;;
  esac
}

write_compute_sources() {
  local s
  for s in $(trained_systems); do
    mkdir -p "${expdir}/asr_${s}"
    compute_sources "$s" >"${expdir}/asr_${s}/compute_sources.tmp"
    mv "${expdir}/asr_${s}/compute_sources.tmp" "${expdir}/asr_${s}/compute_sources"
  done
}

# decode_system TAG: streaming decoding of the test sets, every utterance in its own
# language; one process per job decodes all languages (a process start costs ~15 s).
# decode_system TAG [LANG]: with LANG, only that language's test set (LSP models).
decode_system() {
  local tag=$1 only=${2:-} dir=${expdir}/asr_$1
  local model=${dir}/${inference_model} masks=()
  if [ -f "${dir}/masks.pth" ]; then  # a pruning run: its final masks and weights
    model=${dir}/${pruned_inference_model}; masks=(--pathway_masks "${dir}/masks.pth")
  fi
  [ -e "$model" ] || { echo "$0: no model ${model} for system ${tag}" >&2; exit 1; }
  local lm_args=() newer_than=("$model" "$decode_config")
  if "$use_lm"; then
    local lm_dir
    for lm_dir in $(lm_dirs); do
      [ -e "${lm_dir}/${lm_inference_model}" ] \
        || { echo "$0: --use_lm true: no LM ${lm_dir}/${lm_inference_model} (stage 3 trains it)" >&2; exit 1; }
      newer_than+=("${lm_dir}/${lm_inference_model}")
    done
    lm_dir=$(lm_dir_arg)
    lm_args=(--lm_train_config "${lm_dir}/config.yaml" --lm_file "${lm_dir}/${lm_inference_model}")
  fi
  # What a result was decoded with, beside its files' times: the checkpoint, masks and LM
  # (or none) and the decoding config's contents.  Without it a rerun with --use_lm false
  # after an LM-fused decoding, or with another --inference_model whose file is older than
  # the result, kept the old hypotheses under the new heading.
  local sig
  sig=$({ echo "${model} ${masks[*]} ${lm_args[*]}"; cat "$decode_config"; } | md5sum | cut -c1-32)
  for t in ${test_sets}; do
    local data=${data_feats}/${t}${only:+_${only}} out=${dir}/${decode_tag}/${t} f done=true
    for f in "${newer_than[@]}"; do [ -f "${out}/text" ] && [ "${out}/text" -nt "$f" ] || done=false; done
    [ "$(cat "${out}/.decode_signature" 2>/dev/null)" = "$sig" ] || done=false
    if "$done"; then
      log "${tag}/${t}: decoded already; skipping"; echo "${tag}/${t}" >>"$reused_log"; continue
    fi
    rm -rf "${out}/logdir"; mkdir -p "${out}/logdir"
    local n; n=$(wc -l <"${data}/wav.scp"); local jobs=$((n < nj ? n : nj))
    awk -v n="$jobs" -v d="${out}/logdir" '{ print $1 > (d "/keys." ((NR - 1) % n + 1)) }' "${data}/wav.scp"
    log "${tag}: decoding ${data} (${n} utts, ${jobs} jobs, model ${model##*/}) -> ${out}"
    # A job that meets a bad utterance decodes the others, lists it in its bad_utts and
    # fails; the results below are then not replaced (the earlier ones stay complete).
    if ! ${decode_cmd} JOB=1:"${jobs}" "${out}/logdir/decode.JOB.log" \
      ${python} -m espnet_pathways.bin.asr_pathways_inference --config "$decode_config" \
        --asr_train_config "${dir}/config.yaml" --asr_model_file "$model" \
        --data_path_and_name_and_type "${data}/wav.scp,speech,sound" \
        --key_file "${out}/logdir/keys.JOB" --utt2lang "${data}/utt2lang" \
        --output_dir "${out}/logdir/output.JOB" "${masks[@]}" "${lm_args[@]}"; then
      local n_bad; n_bad=$(cat "${out}"/logdir/output.*/bad_utts 2>/dev/null | wc -l) || true
      echo "$0: ${tag}/${t}: decoding failed: ${n_bad} bad utterance(s) in" \
           "${out}/logdir/output.*/bad_utts, logs ${out}/logdir/decode.*.log;" \
           "earlier results in ${out} are kept" >&2
      exit 1
    fi
    for lang in ${only:-${languages}}; do  # per-language copies: test_en/text, ...
      [ -d "${data_feats}/${t}_${lang}" ] || continue
      local lang_dir=${dir}/${decode_tag}/${t}_${lang}
      mkdir -p "$lang_dir"
      cat "${out}"/logdir/output.*/1best_recog/text \
        | awk 'NR == FNR { keep[$1] = 1; next } ($1 in keep)' "${data_feats}/${t}_${lang}/utt2lang" - \
        | sort >"${lang_dir}/text.tmp"
      mv "${lang_dir}/text.tmp" "${lang_dir}/text"
    done
    cat "${out}"/logdir/output.*/rtf >"${out}/rtf.tmp" && mv "${out}/rtf.tmp" "${out}/rtf"
    for f in text token token_int score; do
      cat "${out}"/logdir/output.*/1best_recog/${f} | sort >"${out}/${f}.tmp"
      mv "${out}/${f}.tmp" "${out}/${f}"
    done
    echo "$sig" >"${out}/.decode_signature.tmp" && mv "${out}/.decode_signature.tmp" "${out}/.decode_signature"
  done
}

# An LSP system is one pruned model per language: decode each on its own language and
# gather the results under exp/asr_lsp_<kind>/ like any other system.
decode_lsp() {
  local tag=$1 dir=${expdir}/asr_$1
  for lang in ${languages}; do
    decode_system "${tag}_${lang}" "$lang"
    for t in ${test_sets}; do
      mkdir -p "${dir}/${decode_tag}"
      ln -sfn "$(cd "${expdir}/asr_${tag}_${lang}/${decode_tag}/${t}_${lang}" && pwd)" \
        "${dir}/${decode_tag}/${t}_${lang}"
      ln -sfn "$(cd "${expdir}/asr_${tag}_${lang}/${decode_tag}/${t}" && pwd)" \
        "${dir}/${decode_tag}/${t}.${lang}"
    done
  done
}

stage_decode() {
  for s in $(trained_systems); do
    case "$s" in lsp_*) decode_lsp "$s" ;; *) decode_system "$s" ;; esac
  done
}

stage_score() {
  for s in $(trained_systems); do
    for t in ${test_sets}; do
      for lang in ${languages}; do
        local data=${data_feats}/${t}_${lang} out=${expdir}/asr_${s}/${decode_tag}/${t}_${lang}
        [ -f "${out}/text" ] || { log "no hypotheses in ${out}; skipping"; continue; }
        for unit in word char; do
          local sd=${out}/score_$([ "$unit" = word ] && echo wer || echo cer)
          ${python} -m espnet_pathways.bin.score --ref "${data}/text" --hyp "${out}/text" \
            --out_dir "$sd" --unit "$unit" 2>&1 | grep -E "WER|CER|WARN|ERROR" | sed "s|^|${s}/${t}_${lang}: |"
        done
      done
    done
  done
}

# system_info.json: parameters kept and sparsity, for the RESULTS.md tables.
system_info() {
  local s=$1 dir=${expdir}/asr_$1
  case "$s" in
    lsp_*) local l=${languages%% *}; dir=${expdir}/asr_${s}_${l}
           ${python} -m espnet_pathways.bin.pathway_masks info --model_file "${dir}/${pruned_inference_model}" \
             --masks "${expdir}/masks/${s}.pth" --out "${expdir}/asr_${s}/system_info.json" ;;
    lap) ${python} -m espnet_pathways.bin.pathway_masks info --model_file "${dir}/${pruned_inference_model}" \
           --masks "${dir}/masks.pth" --out "${dir}/system_info.json" ;;
    pathways_*) local m=${expdir}/masks/lsp_${s#pathways_}.pth model=${dir}/${inference_model}
           # a run that made its own masks (random, dynamic): those, at its last epoch
           if [ -f "${dir}/masks.pth" ]; then m=${dir}/masks.pth; model=${dir}/${pruned_inference_model}; fi
           ${python} -m espnet_pathways.bin.pathway_masks info --model_file "$model" \
             --masks "$m" --out "${dir}/system_info.json" ;;
    *) ${python} -m espnet_pathways.bin.pathway_masks info --model_file "${dir}/${inference_model}" \
         --out "${dir}/system_info.json" ;;
  esac 2>&1 | grep -v "^\[" || true
}

stage_results() {
  local args=()
  write_compute_sources
  for s in $(trained_systems); do [ -d "${expdir}/asr_${s}" ] && system_info "$s"; done
  for s in $(trained_systems); do args+=(--system "${s}=${expdir}/asr_${s}"); done
  local configs="${dense_tag}=${dense_config} dense_small=${dense_small_config} lsp=${prune_config}"
  configs+=" lap=${lap_config} pathways=${pathways_config}"  # dense_ft: the pathway config, no masks
  [ -f "${dynamic_config}" ] && configs+=" pathways_dynamic=${dynamic_config}"  # overrides of pathways
  "$use_lm" && configs+=" lm=${lm_config}"
  configs+=" decode=${decode_config}"
  for c in ${result_configs:-$configs}; do args+=(--config "$c"); done
  if "$use_lm"; then
    local lm_what="the RNN LM \`${lm_exp}/${lm_inference_model}\`"
    "$lm_per_language" && lm_what="each utterance's language's RNN LM (\`${lm_exp}_<lang>/${lm_inference_model}\`)"
    args+=(--decoding_note "every system with ${lm_what} fused, lm_weight $(config_value "$decode_config" lm_weight), lm_token_bonus $(config_value "$decode_config" lm_token_bonus)")
  else  # the decoding config's lm_* keys, listed under Configs, apply only with an LM
    args+=(--decoding_note "no language model fused (\`--use_lm false\`: the lm_* keys of the decoding config are unused)")
  fi
  [ -f data/local/corpus_summary.tsv ] && args+=(--data_summary data/local/corpus_summary.tsv)
  [ -f data/test/spk2voice ] && args+=(--voice_data data/test)  # the test_<lang> scored above
  [ -f "${expdir}/masks/overlap.json" ] && args+=(--overlap_json "${expdir}/masks/overlap.json")
  for m in lsp_imp lsp_lth; do  # overlap/IoU per layer group
    [ -f "${expdir}/masks/${m}.pth" ] && args+=(--masks "${m}=${expdir}/masks/${m}.pth")
  done
  [ -f "${expdir}/asr_pathways_dynamic/masks.pth" ] &&  # the masks dynamic training ended with
    args+=(--masks "pathways_dynamic=${expdir}/asr_pathways_dynamic/masks.pth")
  local drift=${expdir}/asr_pathways_dynamic/mask_drift.json
  [ -f "$drift" ] && args+=(--mask_drift "$drift")
  [ -f "${expdir}/deploy/deploy.tsv" ] && args+=(--deploy_table "${expdir}/deploy/deploy.tsv")
  wanted dense_ft && args+=(--extra_reference dense_ft)  # the compute-matched dense baseline
  case "$inference_model" in  # the claims' pathway system: the dev loss of the decoded epoch
    valid.loss.*) args+=(--dev_epoch best) ;;
  esac
  ${python} -m espnet_pathways.bin.make_results --out "$results" "${args[@]}" \
    --decode_dir "$decode_tag" --langs "$(echo ${languages} | tr ' ' ',')" \
    --reference_system "$dense_tag" --stage_times "$times"
  log "Wrote ${results}"
  sed -n '/^## Results/,/^## /p' "$results" | head -n 30
  sed -n '/^## Paper claims/,/^## /p' "$results" | grep '^|' || true
}

# Figures: mask overlap and IoU per layer group and per-layer sparsity of the LSP mask
# sets, the dynamic pathway masks' drift, WER per system and language, ESPnet's training
# curves -> ${expdir}/plots/index.md.
stage_plots() {
  local args=(--out_dir "${expdir}/plots" --results_dir "$expdir" --systems "$(trained_systems)"
              --decode_dir "$decode_tag" --langs "$(echo ${languages} | tr ' ' ',')")
  for m in "${expdir}/masks/lsp_imp.pth" "${expdir}/masks/lsp_lth.pth"; do
    [ -f "$m" ] && args+=(--masks "$m")
  done
  local drift=${expdir}/asr_pathways_dynamic/mask_drift.json
  [ -f "$drift" ] && args+=(--mask_drift "$drift")
  ${python} -m espnet_pathways.bin.make_plots "${args[@]}"
  log "Plots: ${expdir}/plots/index.md"
}

# Model zip with ESPnet's packer: config, weights (compact: only the union's weights),
# masks, bpe model and feature stats (--use_lm true: also the LM and the decoding config
# that gives its weights); loads with PathwaySpeech2Text.from_pretrained.
stage_pack() {
  local lm_args=()
  "$use_lm" && lm_args=(--lm_train_config "$(lm_dir_arg)/config.yaml"
                        --lm_file "$(lm_dir_arg)/${lm_inference_model}" --decode_config "$decode_config")
  for s in ${pack_systems}; do
    wanted "$s" || { log "${s}: not in --systems; not packed"; continue; }
    local dir=${expdir}/asr_${s}
    local masks=${expdir}/masks/lsp_${s#pathways_}.pth model=${dir}/${inference_model}
    # a run that made its own masks (random, dynamic, LAP): those, at its last epoch
    if [ -f "${dir}/masks.pth" ]; then masks=${dir}/masks.pth; model=${dir}/${pruned_inference_model}; fi
    local margs=() compact=false
    if [ -f "$masks" ]; then margs=(--pathway_masks "$masks"); compact=$pack_compact; fi
    # written under a temporary name: a failed pack keeps an earlier ${s}.zip
    ${python} -m espnet_pathways.bin.asr_pathways_pack --asr_train_config "${dir}/config.yaml" \
      --asr_model_file "$model" "${margs[@]}" --compact "$compact" "${lm_args[@]}" \
      --outpath "${dir}/${s}.zip"
    log "Packed ${dir}/${s}.zip ($(du -h "${dir}/${s}.zip" | cut -f1))"
  done
}

# Deployment table: each system's zip size, CER/WER and 1-thread streaming RTF in fp32 and
# int8 (a dense model in int8; a pathway model's exported pathway per language in int8), on
# ${deploy_max_utts} test utterances per language -> ${expdir}/deploy/deploy.tsv, then
# RESULTS.md again with the table (docs/deploy.md).
stage_deploy() {
  local args=() t=${test_sets%% *}
  for s in ${deploy_systems}; do
    wanted "$s" || { log "${s}: not in --systems; not in the deployment table"; continue; }
    [ -d "${expdir}/asr_${s}" ] && args+=(--system "${s}=${expdir}/asr_${s}")
  done
  [ ${#args[@]} -gt 0 ] || { log "no system of --deploy_systems was trained; skipping"; return; }
  local repo; repo=$(cd "$(dirname "$(readlink -f "$0")")/../../.." && pwd)
  ${python} "${repo}/benchmarks/bench_deploy.py" "${args[@]}" \
    --data "${data_feats}/${t}" --langs "$(echo ${languages} | tr ' ' ',')" \
    --max_utts "$deploy_max_utts" --inference_model "$inference_model" \
    --quantize_modules ${deploy_quantize_modules} --reference_system "$dense_tag" \
    --work_dir "${expdir}/deploy" --out "${expdir}/deploy/deploy.tsv"
  stage_results
}

# Upload the packed models to Hugging Face (needs network, huggingface_hub and a token;
# offline it stops with a message saying what is missing).
stage_upload() {
  [ -n "$hf_repo" ] || { log "--hf_repo not given: nothing to upload"; return; }
  for s in ${pack_systems}; do
    wanted "$s" || continue
    ${python} -m espnet_pathways.bin.hf_upload --model "${expdir}/asr_${s}/${s}.zip" --repo_id "${hf_repo}"
  done
}

# ------------------------------------------------------------------------------------
# Adding a language (stages 18-21): grow a trained pathway model by one language whose
# pathway is pruned (IMP) and trained on its data alone; in frozen mode nothing the old
# pathways read changes, so their outputs stay bit-identical (docs/add_language.md).
add_paths() {
  add_dir=${expdir}/add_${add_language}
  add_feats=${dumpdir}/raw/add_${add_language}
  add_stats=${add_dir}/stats
  add_src=${expdir}/asr_${add_language_from}
}

# add_env CMD...: run CMD with the recipe's variables pointing at the grown model and the
# new language's data (train_system and decode_system read them).
add_env() {
  data_feats=$add_feats stats_dir=$add_stats token_type=word text_file=text.pieces \
    token_args="--token_type word --bpemodel none" token_list=${add_dir}/init/tokens.txt \
    token_mode=merged languages="${languages} ${add_language}" sub=_${add_language} "$@"
}

stage_add_data() {
  add_paths
  if ! "$skip_data_prep"; then
    local/data.sh ${local_data_opts} \
      ${add_language_data_opts:---langs ${add_language} --out_dir data/lang_${add_language}}
  fi
  for s in "$train_set" "$valid_set" ${test_sets}; do
    ${python} -m espnet_pathways.bin.format_data --languages ${languages} ${add_language} \
      --fs "$fs" --src "data/lang_${add_language}/${s}" --dst "${add_feats}/${s}" \
      --split_languages true
  done
}

# The grown model (tokens, weights, masks, configs), the dense baseline's grown start, and
# the shape files of the new language's data (its features are normalised with the old
# statistics: the old languages share the frontend).
stage_add_grow() {
  add_paths
  local l=$add_language config=${add_language_config:-$prune_config}
  local grow=(--lang "$l" --text "${add_feats}/${train_set}_${l}/text" --vocab_size "$nbpe"
              --model_type "$bpe_model_type" --train_config "$config")
  local start=()  # the pathway model only: free weights and start mask
  case "$add_language_init_free" in
    dense) start+=(--init_free_from "$(dense_model)") ;;
    zero) ;;
    *) echo "$0: --add_language_init_free ${add_language_init_free}: choose dense or zero" >&2; exit 1 ;;
  esac
  [ -n "$add_language_shared_from" ] && start+=(--shared_from "$add_language_shared_from")
  ${python} -m espnet_pathways.bin.add_language "${grow[@]}" "${start[@]}" \
    --asr_train_config "${add_src}/config.yaml" --asr_model_file "${add_src}/${inference_model}" \
    --segment "${add_feats}/${train_set}_${l}" "${add_feats}/${valid_set}_${l}" \
    --out_dir "${add_dir}/init"
  if "$add_language_baseline" || "$add_language_scratch"; then  # (scratch: its config)
    ${python} -m espnet_pathways.bin.add_language "${grow[@]}" \
      --asr_train_config "${expdir}/asr_${dense_tag}/config.yaml" \
      --asr_model_file "$(dense_model)" --out_dir "${add_dir}/init_dense"
    cp "${add_dir}/init/tokens.txt" "${add_dir}/init_dense/tokens.txt"  # same pieces
  fi
  local n; n=$(wc -l <"${add_dir}/init/tokens.txt")
  mkdir -p "${add_stats}/train"
  cp "${stats_dir}/train/feats_stats.npz" "${add_stats}/train/feats_stats.npz"
  for s in train valid; do
    local set=$([ "$s" = train ] && echo "$train_set" || echo "$valid_set")
    local d=${add_feats}/${set}_${l} o=${add_stats}/${s}_${l}
    mkdir -p "$o"
    cp "${d}/utt2num_samples" "${o}/speech_shape"
    awk -v N="$n" '{ print $1 " " (NF - 1) "," N }' "${d}/text.pieces" >"${o}/text_shape.word"
  done
}

# add_lr_args M: --optim_conf lr=LR for stage-20 training M (frozen, shared, dense, scratch) when
# --add_language_lr names it (ESPnet merges it into the config's optim_conf).
add_lr_args() {
  local kv
  for kv in ${add_language_lr}; do
    [ "${kv%%=*}" = "$1" ] && echo "--optim_conf lr=${kv#*=}"
  done
  return 0
}

check_add_lr() {  # every --add_language_lr entry is M=number with M frozen|shared|dense|scratch
  local kv
  for kv in ${add_language_lr}; do
    case "$kv" in
      frozen=*|shared=*|dense=*|scratch=*) ;;
      *) echo "$0: --add_language_lr: '${kv}' is not frozen=LR, shared=LR, dense=LR or scratch=LR" >&2; exit 1 ;;
    esac
    [[ "${kv#*=}" =~ ^[0-9]*\.?[0-9]+([eE]-?[0-9]+)?$ ]] ||
      { echo "$0: --add_language_lr: '${kv}': the learning rate is not a number" >&2; exit 1; }
  done
}

# The new pathway: IMP on the new language from the grown weights (free and shared
# weights pruned apart), then training at the final mask; frozen and/or shared mode.
stage_add_train() {
  add_paths
  local l=$add_language
  for mode in ${add_language_mode}; do
    local freeze=()
    case "$mode" in
      frozen) freeze=(--freeze_pathways ${languages}) ;;
      shared) ;;
      *) echo "$0: --add_language_mode ${mode}: choose frozen and/or shared" >&2; exit 1 ;;
    esac
    add_env queue_training "add_${l}_${mode}" "${add_dir}/init/train.yaml" \
      --init_param "${add_dir}/init/model.pth" --pathway_masks "${add_dir}/init/masks.pth" \
      --pruning imp --pruning_languages "$l" \
      --pruning_target_sparsity "${add_language_sparsity:-$target_sparsity}" "${freeze[@]}" \
      $(add_lr_args "$mode")
  done
  if "$add_language_baseline"; then  # same config and steps, dense, the new language alone
    add_env queue_training "add_${l}_dense" "${add_dir}/init_dense/train.yaml" \
      --init_param "${add_dir}/init_dense/model.pth" $(add_lr_args dense)
  fi
  if "$add_language_scratch"; then  # the same, from random weights (no --init_param)
    add_env queue_training "add_${l}_scratch" "${add_dir}/init_dense/train.yaml" \
      $(add_lr_args scratch)
  fi
  add_env run_queued_trainings
}

# score_add DATA OUT NAME: WER and CER of OUT/text against DATA/text (stage 21).
score_add() {
  local data=$1 out=$2 name=$3 unit
  for unit in word char; do
    ${python} -m espnet_pathways.bin.score --ref "${data}/text" --hyp "${out}/text" \
      --out_dir "${out}/score_$([ "$unit" = word ] && echo wer || echo cer)" --unit "$unit" \
      2>&1 | grep -E "WER|CER|WARN|ERROR" | sed "s|^|${name}: |"
  done
}

# Decode the new language with each system and the old languages again with the grown
# model, score, and write RESULTS_add_<lang>.md plus its section in RESULTS.md.
stage_add_results() {
  add_paths
  local l=$add_language systems_add=() args=() use_lm=$use_lm decode_tag=$decode_tag
  if "$use_lm"; then
    # The fusion LM scores the old vocabulary only; the grown models have the new
    # language's tokens too.  So this section decodes without the LM, the model before
    # included (its old languages are compared with the grown model's, byte for byte).
    use_lm=false decode_tag=${decode_tag}_nolm
    log "add ${l}: decoding without the LM (${decode_tag}), ${add_language_from} too for the comparison"
    decode_system "$add_language_from"
    for t in ${test_sets}; do
      for lang in ${languages}; do
        score_add "${data_feats}/${t}_${lang}" "${add_src}/${decode_tag}/${t}_${lang}" "${add_language_from}/${t}_${lang}"
      done
    done
  fi
  for mode in ${add_language_mode}; do systems_add+=("add_${l}_${mode}"); done
  "$add_language_baseline" && systems_add+=("add_${l}_dense")
  "$add_language_scratch" && systems_add+=("add_${l}_scratch")
  for s in "${systems_add[@]}"; do
    decode_tag="${decode_tag}_${l}" add_env decode_system "$s" "$l"
    for t in ${test_sets}; do
      mkdir -p "${expdir}/asr_${s}/${decode_tag}"
      ln -sfn "$(cd "${expdir}/asr_${s}/${decode_tag}_${l}/${t}_${l}" && pwd)" \
        "${expdir}/asr_${s}/${decode_tag}/${t}_${l}"
    done
    # The old languages again with the grown model: always in frozen mode (it proves the
    # bit-identity), in shared mode only when asked, never for the dense baseline.
    if [ "$s" = "add_${l}_frozen" ] || { [ "$s" = "add_${l}_shared" ] && "$add_language_decode_old_shared"; }; then
      decode_system "$s"
    fi
  done
  for s in "${systems_add[@]}"; do
    for t in ${test_sets}; do
      for lang in ${languages} ${l}; do
        local data=${data_feats}/${t}_${lang} out=${expdir}/asr_${s}/${decode_tag}/${t}_${lang}
        [ "$lang" = "$l" ] && data=${add_feats}/${t}_${lang}
        [ -f "${out}/text" ] || continue
        score_add "$data" "$out" "${s}/${t}_${lang}"
      done
    done
  done
  for mode in ${add_language_mode}; do args+=(--system "${mode}=${expdir}/asr_add_${l}_${mode}"); done
  "$add_language_baseline" && args+=(--baseline "${expdir}/asr_add_${l}_dense")
  "$add_language_scratch" && args+=(--scratch "${expdir}/asr_add_${l}_scratch")
  ${python} -m espnet_pathways.bin.add_language_results --lang "$l" --old_langs ${languages} \
    --before "$add_src" "${args[@]}" --grown "${add_dir}/init" --decode_dir "$decode_tag" \
    --out "$(add_results)" --results "$results" --stage_times "$times"
  log "Wrote $(add_results) and its section in ${results}"
}

# Every training after stage 5 starts from the dense model (--init_param), so the configs
# the selected stages train with must build its architecture: checked before any stage
# runs (docs/recipe.md, "Configs: one architecture"; config_check.py: what may differ).
will_train() {  # will_train STAGE [SYSTEM...]: STAGE is selected (and trains one of them)
  [ "$stage" -le "$1" ] && [ "$stop_stage" -ge "$1" ] && { [ $# -eq 1 ] || wanted "${@:2}"; }
}
derived=()
if will_train 6 dense_ft || will_train 10 pathways_imp pathways_lth pathways_random pathways_dynamic; then
  derived+=("$pathways_config"); fi
if will_train 7 lsp_imp lsp_lth pathways_imp pathways_lth || { will_train 7 && wants_lsp_imp; }; then
  derived+=("$prune_config"); fi
if will_train 8 lap || { [ "$dynamic_init" = lap ] && will_train 8 pathways_dynamic; }; then
  derived+=("$lap_config"); fi
[ -n "$add_language" ] && { will_train 19 || will_train 20; } && derived+=("${add_language_config:-$prune_config}")
if [ -n "$add_language" ] && will_train 20; then check_add_lr; fi  # before anything runs
[ ${#derived[@]} -eq 0 ] ||
  ${python} -m espnet_pathways.bin.check_configs --dense "$dense_config" "${derived[@]}" || exit 1

run_stage 1 "data preparation (local/data.sh)" stage_data
run_stage 2 "check and format data dirs" stage_format
run_stage 3 "output vocabulary$("$use_lm" && echo " and language model")" stage_vocabulary
run_stage 4 "feature statistics and shapes" stage_stats
run_stage 5 "train the dense multilingual transducer" stage_train_dense
run_stage 6 "dense baselines (dense_ft, dense_small)" stage_train_dense_baselines
run_stage 7 "language-specific pruning (LSP: IMP, LTH)" stage_lsp
run_stage 8 "language-agnostic pruning (LAP)" stage_lap
run_stage 9 "pathway masks (combine, overlap)" stage_masks
run_stage 10 "pathway training (IMP, LTH, random, dynamic)" stage_pathways
run_stage 11 "streaming decoding" stage_decode
run_stage 12 "scoring (WER, CER)" stage_score
run_stage 13 "RESULTS.md" stage_results
run_stage 14 "plots (mask overlap, sparsity, WER)" stage_plots
run_stage 15 "pack models (ESPnet model zip)" stage_pack
run_stage 16 "deployment table (fp32 vs int8)" stage_deploy
run_stage 17 "upload to Hugging Face" stage_upload
if [ -n "$add_language" ]; then
  run_stage 18 "add ${add_language}: data" stage_add_data
  run_stage 19 "add ${add_language}: vocabulary and grown model" stage_add_grow
  run_stage 20 "add ${add_language}: new pathway (IMP + training, ${add_language_mode})" stage_add_train
  run_stage 21 "add ${add_language}: decode, score, RESULTS_add_${add_language}.md" stage_add_results
fi
log "Finished in ${SECONDS} s"
exit 0
}
