"""The embedded synthetic splits: procedurally rendered long dance clips with exact ground truth.

Real long-horizon clips are heavy, licensed, and their keypoints come from a detector. These clips
are small (64x96, 25 fps), free, and exact (keypoints, face boxes and view angle come from the
geometry that is drawn), so a model trained on a CPU can be measured over the full 90 s. A 90 s
clip renders in about 3 s on one core (about 4 s with its videos written).

The world of one clip:

- a static room: a wall with a structured wallpaper (stripes, dots, bricks, diamonds or waves with
  periods of 10-16 px), framed pictures, windows, shelves with books, clocks and plants, a baseboard,
  and a floor of planks, tiles or carpet in perspective, under smooth lighting. No per-pixel noise:
  a small VAE cannot learn it.
- one character: head with face (eyes, brows, mouth) and hair, a torso with a patterned shirt and a
  chest emblem, arms, hands, trousers and shoes. The head and torso are textured 3D surfaces (an
  ellipsoid and an elliptic cylinder), so the face and emblem show only from the front and the hair
  covers the back of the head; limbs are tapered capsules. The character turns through front, side
  and back views, so keeping its identity across views matters.
- dance-like motion: joint angles from sums of sinusoids on a per-clip beat, step-touches, and
  occasional moves (arm raises, waves, reaches, squats, kicks, leans, side steps), with the feet on
  the floor and the whole body inside the frame.

Rendering is 2x supersampled: parts are distance fields evaluated on the pixel grid, vectorised over
batches of frames, composited back to front by depth, then area-downsampled.

The world is smooth enough for a small VAE yet full of structure: edges are soft (1.5 px), colours
are kept off the extremes, patterns have periods of 5-16 px. Its downsample-upsample bound
(:func:`.render.resample_psnr`: area-downsample by ``f``, bicubic upsample, PSNR against the frames),
measured over the three full 90 s test clips:

    ======  ==========================
    factor  PSNR (dB), clips 0 / 1 / 2
    ======  ==========================
    2x      36.8 / 36.7 / 34.8
    4x      30.9 / 30.2 / 29.4
    8x      26.9 / 26.6 / 26.2
    ======  ==========================

Over the first 4 s of twelve training clips (mostly facing the camera, the hardest part) 4x gives
28.8 dB on average, 27.2 dB at worst.

Every clip is a pure function of ``(split version, seed)`` with ``seed = seed_offset + index``; the
train split's seeds start far above the test split's. Each aspect (look, room, rhythm, moves, turns,
face) draws from its own random stream, and events are drawn in time order, so a shorter clip is
exactly the beginning of a longer one with the same seed.

The renderer, split along its seams; imports run down this list and never up:

- ``spec``: the frame format, :class:`SyntheticSpec`, the named splits ``SPLITS``, the random streams;
- ``primitives``: colours, soft-edged coverage, smooth pulses, rotations;
- ``look``: the character's look; ``motion``: joint angles, moves, turns and face motion over time;
- ``rig``: the skeleton, placement and exact keypoints (:func:`~.rig.clip_motion`, without pixels);
- ``room``: the static background; ``render``: compositing, pose and face videos (:func:`~.render.render_clip`);
- ``cache``: the cache folder keyed by :func:`~.cache.renderer_hash`, and :func:`~.cache.ensure_split`;
- ``strip`` and ``__main__``: a picture of the clips, and ``python -m benchmark.splits.synthetic``.
"""
