# Output channels of RepGhostNet's stages per width: out_indices 0-3 are strides 4/8/16/32
# (what an FPN takes), 4 the final 1x1 conv (stride 32); equal to RepGhostNet(arch).out_channels
# with out_indices=(0, 1, 2, 3, 4). A detection config derives its neck from the backbone:
#   neck=dict(in_channels=[_base_.repghostnet_stage_channels[arch][i] for i in out_indices])
# and a config that changes the width restates it (a mismatch fails when the model is built).
repghostnet_stage_channels = {
    '0.5x': [12, 20, 40, 80, 480],
    '0.58x': [16, 24, 48, 92, 556],
    '0.8x': [20, 32, 64, 128, 768],
    '1.0x': [24, 40, 80, 160, 960],
    '1.11x': [28, 44, 88, 176, 1064],
    '1.3x': [32, 52, 104, 208, 1248],
    '1.5x': [36, 60, 120, 240, 1440],
    '2.0x': [48, 80, 160, 320, 1920],
}
