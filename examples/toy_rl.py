"""A toy RL loop over Monarch meshes, shaped like Forge's GRPO app.

The policy learns one weight ``w`` so that its action for a feature ``x`` is
close to ``target * x``. Each step: the policy procs sample actions
(generate), the reward function scores them in the client (score), and the
trainer applies a REINFORCE update and returns the new weight (update).
Results and a checkpoint go to the job directory.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

from monarch.actor import Actor, endpoint
from omegaconf import OmegaConf

from forge_launcher.runtime import attach_mesh


class Policy(Actor):
    def __init__(self, sigma: float, seed: int) -> None:
        self.weight = 0.0
        self.sigma = sigma
        self.rng = random.Random(seed)

    @endpoint
    def set_weight(self, weight: float) -> None:
        self.weight = weight

    @endpoint
    def generate(self, features: list[float]) -> list[tuple[float, float]]:
        return [(x, self.rng.gauss(self.weight * x, self.sigma)) for x in features]


class Trainer(Actor):
    def __init__(self, learning_rate: float, sigma: float) -> None:
        self.weight = 0.0
        self.learning_rate = learning_rate
        self.sigma = sigma

    @endpoint
    def update(self, samples: list[tuple[float, float, float]]) -> float:
        # REINFORCE with a mean-reward baseline for a Gaussian policy.
        baseline = sum(r for _, _, r in samples) / len(samples)
        gradient = sum((r - baseline) * (a - self.weight * x) * x / self.sigma**2 for x, a, r in samples) / len(samples)
        self.weight += self.learning_rate * gradient
        return self.weight

    @endpoint
    def state(self) -> dict:
        return {"weight": self.weight}


def score(target: float, x: float, action: float) -> float:
    return -((action - target * x) ** 2)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True)
    args, extra = parser.parse_known_args()
    cfg = OmegaConf.load(args.config)
    print(f"toy_rl: job {cfg.job.name}, forwarded args {json.dumps(extra)}", flush=True)

    policy_hosts = attach_mesh("policy_0")
    trainer_hosts = attach_mesh("trainer")
    policy = policy_hosts.spawn_procs(per_host={"procs": cfg.services.policy.procs}).spawn("policy", Policy, cfg.sigma, cfg.seed)
    trainer = trainer_hosts.spawn_procs(per_host={"procs": cfg.actors.trainer.procs}).spawn("trainer", Trainer, cfg.learning_rate, cfg.sigma)

    rng = random.Random(cfg.seed)
    history = []
    weight = 0.0
    for step in range(cfg.steps):
        features = [rng.uniform(0.5, 1.5) for _ in range(cfg.group_size)]
        generated = policy.generate.call(features).get()
        samples = [(x, a, score(cfg.target, x, a)) for _, batch in generated.items() for x, a in batch]
        mean_reward = sum(r for _, _, r in samples) / len(samples)
        weights = trainer.update.call(samples).get()
        weight = next(iter(w for _, w in weights.items()))
        policy.set_weight.call(weight).get()
        history.append({"step": step, "mean_reward": mean_reward, "weight": weight})
        print(f"toy_rl: step {step} samples {len(samples)} mean_reward {mean_reward:.3f} weight {weight:.3f}", flush=True)

    checkpoint_dir = Path(cfg.checkpoint.folder)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    state = next(iter(s for _, s in trainer.state.call().get().items()))
    (checkpoint_dir / f"step_{cfg.steps}.json").write_text(json.dumps(state))
    result = {"steps": cfg.steps, "final_weight": weight, "history": history, "forwarded_args": extra}
    (Path(cfg.job.dir) / "result.json").write_text(json.dumps(result, indent=2))
    print(f"toy_rl: done, result in {cfg.job.dir}/result.json", flush=True)

    policy_hosts.shutdown().get()
    trainer_hosts.shutdown().get()
    return 0


if __name__ == "__main__":
    sys.exit(main())
