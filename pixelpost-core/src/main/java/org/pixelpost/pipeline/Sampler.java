package org.pixelpost.pipeline;

import java.util.ArrayList;
import java.util.List;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorVector;
import org.bytedeco.pytorch.global.torch;
import org.pixelpost.model.text.TextEncoder;
import org.pixelpost.sampling.DdimLoop;
import org.pixelpost.sampling.Denoise;
import org.pixelpost.sampling.Guidance;
import org.pixelpost.tensor.Generator;
import org.pixelpost.tensor.Scope;
import org.pixelpost.tensor.Tensors;

/**
 * Text-to-image sampling with DDIM and classifier-free guidance (the empty prompt is the
 * unconditional input). Each image starts from noise drawn by a generator seeded with its own
 * seed, so an image depends on its seed alone, not on its batch; nothing touches the process's
 * generator.
 */
public final class Sampler {
    /**
     * @param height image height in pixels (0: the model's own size)
     * @param width image width in pixels (0: the height, or the model's size); a U-Net takes any
     *     multiple of its autoencoder's downsampling times 8, a PixelPost DiT only its own size,
     *     PixArt any multiple of 16 (its 512 and 1024 models' sizes mapped to their nearest
     *     aspect-ratio bin, and the images resized and cropped back, as diffusers does)
     */
    public record Settings(int steps, double guidance, double eta, int height, int width, int concurrent, org.pixelpost.sampling.Samplers.Spec sampler) {
        /**
         * @param concurrent on a CPU, the images of a call are sampled in this many groups at once,
         *     each on its own thread with the cores shared among them (1: in one batch). Each image
         *     depends on its own seed only, so the groups give the images of one batch (to float
         *     precision). With {@code eta > 0} the step noise is drawn for the whole batch, so such
         *     calls run in one batch.
         */
        public Settings {
            if (steps <= 0) throw new IllegalArgumentException("--steps must be positive");
            if (!(eta >= 0) || Double.isInfinite(eta)) throw new IllegalArgumentException("--eta must be a number >= 0");
            if (!Double.isFinite(guidance)) throw new IllegalArgumentException("--guidance must be a finite number");
            if (height < 0) throw new IllegalArgumentException("--size must be positive");
            if (width < 0) throw new IllegalArgumentException("--width must be positive");
            if (concurrent < 1) throw new IllegalArgumentException("--concurrent-batches must be positive");
            if (sampler == null) sampler = org.pixelpost.sampling.Samplers.Spec.ddim();
            org.pixelpost.sampling.Samplers.checkSteps(sampler, steps);
        }

        /** With DDIM. */
        public Settings(int steps, double guidance, double eta, int height, int width, int concurrent) {
            this(steps, guidance, eta, height, width, concurrent, null);
        }

        /** Square images of {@code size} pixels (0: the model's size). */
        public Settings(int steps, double guidance, double eta, int size, int concurrent) {
            this(steps, guidance, eta, size, 0, concurrent);
        }

        public Settings(int steps, double guidance, double eta, int size) {
            this(steps, guidance, eta, size, 0, 1);
        }

        public Settings(int steps, double guidance, double eta) {
            this(steps, guidance, eta, 0, 0, 1);
        }

        /** The height (square images: the size). */
        public int size() {
            return height;
        }

        public Settings withConcurrent(int n) {
            return new Settings(steps, guidance, eta, height, width, n, sampler);
        }

        public Settings withSize(int h, int w) {
            return new Settings(steps, guidance, eta, h, w, concurrent, sampler);
        }

        public Settings withSampler(org.pixelpost.sampling.Samplers.Spec spec) {
            return new Settings(steps, guidance, eta, height, width, concurrent, spec);
        }
    }

    private final TextToImageModel m;

    Sampler(TextToImageModel m) {
        this.m = m;
    }

    /** Starting noise {@code [N, C, h, w]} at the model's size, one image per seed. */
    public Tensor initialNoise(long[] seeds) {
        return initialNoise(seeds, m.latentSize());
    }

    /** Starting noise {@code [N, C, s, s]}, one image per seed. */
    public Tensor initialNoise(long[] seeds, int s) {
        return initialNoise(seeds, s, s);
    }

    /** Starting noise {@code [N, C, h, w]}, one image per seed. */
    public Tensor initialNoise(long[] seeds, int h, int w) {
        return perSeed(seeds, seed -> seed, 1, m.autoencoder.latentChannels(), h, w);
    }

    /** One row of standard normal noise {@code shape} per seed, each from a generator seeded by {@code seedOf(seed)}. */
    static Tensor perSeed(long[] seeds, java.util.function.LongUnaryOperator seedOf, long... shape) {
        List<Tensor> rows = new ArrayList<>();
        for (long seed : seeds)
            try (Generator g = Generator.seeded(seedOf.applyAsLong(seed))) {
                rows.add(g.randn(shape));
            }
        return torch.cat(new TensorVector(rows.toArray(new Tensor[0])), 0);
    }

    /** Images {@code [N, 3, H, W]} in [0, 1], image k for {@code prompts[k]} from noise seeded by {@code seeds[k]}. */
    public Tensor sample(List<String> prompts, long[] seeds, Settings s, DdimLoop.Progress progress) {
        return sample(prompts, null, seeds, s, progress);
    }

    /**
     * As {@link #sample(List, long[], Settings, DdimLoop.Progress)}, guided away from
     * {@code negativePrompts[k]} instead of the empty prompt (null: the empty prompt for all).
     */
    public Tensor sample(List<String> prompts, List<String> negativePrompts, long[] seeds, Settings s, DdimLoop.Progress progress) {
        if (seeds.length != prompts.size()) throw new IllegalArgumentException(seeds.length + " seeds for " + prompts.size() + " prompts");
        if (negativePrompts != null && negativePrompts.size() != prompts.size())
            throw new IllegalArgumentException(negativePrompts.size() + " negative prompts for " + prompts.size() + " prompts");
        int groups = Math.min(s.concurrent(), prompts.size());
        if (groups > 1 && s.eta() == 0 && m.device().is_cpu()) return concurrently(groups, prompts, negativePrompts, seeds, s, progress);
        int height = s.height() == 0 ? m.imageSize : s.height(), width = s.width() == 0 ? height : s.width();
        int[] made = m.family().samplingSize(m, height, width);
        if (made[0] != height || made[1] != width)
            System.err.printf("%dx%d is not one of the model's aspect-ratio bins: sampling at the nearest, %dx%d, then resizing and cropping to %dx%d%n",
                height, width, made[0], made[1], height, width);
        int factor = m.autoencoder.downsampling();
        for (int px : made)
            if (px % factor != 0) throw new org.pixelpost.io.check.InvalidValueException("--size", px + " is not a multiple of the autoencoder's " + factor);
        try (Scope scope = Scope.open(); var g = Tensors.noGrad(); Generator stepNoise = Generator.seeded(seeds[0] ^ 0x5DEECE66DL)) {
            int n = prompts.size();
            List<String> all = new ArrayList<>();
            if (s.guidance() > 1) for (int i = 0; i < n; i++) all.add(negativePrompts == null ? "" : negativePrompts.get(i));
            all.addAll(prompts);
            org.pixelpost.model.Conditioning text = m.textEncoder.encode(all);            // [uncond; cond] rows: 2N (or N without guidance)
            text = m.family().sizeConditions(m, text, made[0], made[1]);
            Tensor zT = m.onDevice(initialNoise(seeds, made[0] / factor, made[1] / factor)); // drawn on the CPU: the same on every device
            Denoise denoise = Guidance.classifierFree(m::denoise, text.on(zT), s.guidance());
            java.util.function.IntFunction<Tensor> rowNoise = step -> rowNoise(seeds, step, zT);
            Tensor z = org.pixelpost.sampling.Samplers.sample(s.sampler(), m.scheduler, s.steps(), denoise, zT, s.eta(), stepNoise, rowNoise, progress);
            Tensor images = Tensors.clamp(m.decodeLatents(z), 0, 1);                       // [N, 3, H', W']
            return scope.keep(made[0] == height && made[1] == width ? images : resizeAndCrop(images, height, width)); // [N, 3, H, W]
        }
    }

    /**
     * A stochastic sampler's fresh noise at {@code step}, shaped like {@code like}: row k from a
     * generator of image k's own seed and the step, so that an image depends on its seed only, whatever
     * the batch.
     */
    static Tensor rowNoise(long[] seeds, int step, Tensor like) {
        long[] shape = Tensors.shape(like);
        shape[0] = 1;
        return Tensors.follow(perSeed(seeds, seed -> Generator.mix(seed ^ 0x5EEDL, step), shape), like);
    }

    /** Scaled (bilinear) until both sides cover {@code h x w}, then the centre cut out, as diffusers returns binned images. */
    static Tensor resizeAndCrop(Tensor images, int h, int w) {
        long ih = images.size(2), iw = images.size(3);
        double ratio = Math.max((double) h / ih, (double) w / iw);
        long rh = Math.max(h, Math.round(ih * ratio)), rw = Math.max(w, Math.round(iw * ratio)); // rounding never leaves a side short
        Tensor r = torch.upsample_bilinear2d(images, new long[] {rh, rw}, false);           // [N, 3, rh, rw]
        long top = (rh - h) / 2, left = (rw - w) / 2;
        return r.narrow(2, top, h).narrow(3, left, w).contiguous();                         // [N, 3, h, w]
    }

    /** The images in {@code groups} contiguous groups, each sampled on its own thread; in order. */
    private Tensor concurrently(int groups, List<String> prompts, List<String> negativePrompts, long[] seeds, Settings s, DdimLoop.Progress progress) {
        int n = prompts.size();
        java.util.concurrent.ExecutorService pool = org.pixelpost.tensor.Engine.threadPool(groups, Math.max(1, org.pixelpost.tensor.Engine.threads() / groups), "sampler");
        List<java.util.concurrent.Future<Tensor>> parts = new ArrayList<>();
        try {
            for (int k = 0; k < groups; k++) {
                int from = (int) ((long) n * k / groups), to = (int) ((long) n * (k + 1) / groups);
                DdimLoop.Progress p = k == 0 ? progress : null; // the groups move in step: the first one reports
                parts.add(pool.submit(() -> sample(prompts.subList(from, to), negativePrompts == null ? null : negativePrompts.subList(from, to),
                    java.util.Arrays.copyOfRange(seeds, from, to), s.withConcurrent(1), p)));
            }
            List<Tensor> images = org.pixelpost.tensor.Engine.awaitAll(parts);
            try {
                return torch.cat(new TensorVector(images.toArray(new Tensor[0])), 0);          // [N, 3, H, W]
            } finally {
                for (Tensor t : images) t.releaseReference(); // each group's images, kept outside its thread's scope
            }
        } finally {
            pool.shutdown();
        }
    }
}
