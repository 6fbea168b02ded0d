"""initsweep entry point: `python train.py -m init=xavier,he,zeros seed=0,1,2`.

A thin Hydra wrapper; the whole job lives in src/initsweep/train.py.
"""

import hydra
from omegaconf import DictConfig

from initsweep.train import train


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    train(cfg)


if __name__ == "__main__":
    main()
