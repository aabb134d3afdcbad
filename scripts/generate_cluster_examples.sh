#!/usr/bin/env bash
# Ways to run `genaug generate` on many GPUs. No flag says how many processes there are: every process claims
# shards through lease files in shards/<set>/gen/<column>/<split>/.leases/, so all of these can run at the same
# time, against the same column, on one shared filesystem. A process that dies leaves a lease whose heartbeat stops;
# another takes that shard over after --lease-timeout seconds (at once on the same host). Rerun to resume.
set -euo pipefail
MODE=${1:-help}
case "$MODE" in
  torchrun)  # one machine, 8 GPUs: each process uses cuda:$LOCAL_RANK
    torchrun --standalone --nproc_per_node 8 -m genaug generate --model sd --shards imagenet ;;
  accelerate)
    accelerate launch --num_processes 8 -m genaug generate --model sd --shards imagenet ;;
  slurm)  # a job array of single-GPU tasks (submit this script with: sbatch --array=0-63 --gres=gpu:1 ...)
    srun genaug generate --model sd --shards /shared/shards/imagenet --no-progress ;;
  ray)  # a Ray cluster (pip install 'genaug[ray]'): one task per shard on one actor per GPU, each loading the model
        # once; Ray restarts dead workers and retries their shard. Start the cluster first, on a shared filesystem:
        #   head:   ray start --head --port 6379        others: ray start --address HEAD:6379
        # The same leases and stats as above, so this can run beside (or after) any of them on the same column.
    genaug generate --model sd --shards /shared/shards/imagenet --engine ray --ray-address auto --num-gpus-per-worker 1 ;;
  status)
    genaug generate --shards imagenet --column sd --status ;;
  *)
    echo "usage: $0 torchrun|accelerate|slurm|ray|status" ;;
esac
