"""PredSim on Fashion-MNIST with PredSim's own optimizer recipe (docs/methods.md §10.6).

Adam lr 5e-4, no weight decay, batch 128, 200 epochs, LR x0.25 at epochs 100/150/175/188. The
backbone is a CIFAR ResNet-20 with one block per module (the stem joins the first: 9 modules),
not PredSim's VGG8b, so the numbers are not PredSim's published ones.
"""
from configs import common


def get_config():
  c = common.get_config("predsim")
  c.num_epochs = 200
  c.data.name = "fashion_mnist"
  c.data.batch_size = 128
  c.data.eval_batch_size = 1000
  c.model.depth = 20
  c.split.preset = "blocks"
  c.optim.name = "adam"
  c.optim.lr = 5e-4
  c.optim.weight_decay = 0.0
  c.optim.schedule = "milestones"
  c.optim.milestones = (100, 150, 175, 188)
  c.optim.milestone_factor = 0.25
  return c
