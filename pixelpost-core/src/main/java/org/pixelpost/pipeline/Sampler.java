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
     * @param size image height and width in pixels (0: the model's own size); a U-Net takes any
     *     multiple of its autoencoder's downsampling times 8, a DiT only its own size
     */
    public record Settings(int steps, double guidance, double eta, int size) {
        public Settings {
            if (steps <= 0) throw new IllegalArgumentException("--steps must be positive");
            if (!(eta >= 0) || Double.isInfinite(eta)) throw new IllegalArgumentException("--eta must be a number >= 0");
            if (!Double.isFinite(guidance)) throw new IllegalArgumentException("--guidance must be a finite number");
            if (size < 0) throw new IllegalArgumentException("--size must be positive");
        }

        public Settings(int steps, double guidance, double eta) {
            this(steps, guidance, eta, 0);
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
        List<Tensor> z = new ArrayList<>();
        for (long seed : seeds)
            try (Generator g = Generator.seeded(seed)) {
                z.add(g.randn(1, m.autoencoder.latentChannels(), s, s));
            }
        return torch.cat(new TensorVector(z.toArray(new Tensor[0])), 0);
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
        int size = s.size() == 0 ? m.imageSize : s.size();
        int factor = m.autoencoder.downsampling();
        if (size % factor != 0) throw new org.pixelpost.io.InvalidValueException("--size", size + " is not a multiple of the autoencoder's " + factor);
        try (Scope scope = Scope.open(); var g = Tensors.noGrad(); Generator stepNoise = Generator.seeded(seeds[0] ^ 0x5DEECE66DL)) {
            int n = prompts.size();
            List<String> all = new ArrayList<>();
            if (s.guidance() > 1) for (int i = 0; i < n; i++) all.add(negativePrompts == null ? "" : negativePrompts.get(i));
            all.addAll(prompts);
            TextEncoder.Encoded text = m.textEncoder.encode(all);                         // [2N or N, T, D]
            Tensor zT = m.onDevice(initialNoise(seeds, size / factor));                    // drawn on the CPU: the same on every device
            Denoise denoise = Guidance.classifierFree(m::denoise, Tensors.follow(text.tokens(), zT),
                text.mask() == null ? null : Tensors.follow(text.mask(), zT), s.guidance());
            Tensor z = DdimLoop.sample(m.scheduler, s.steps(), denoise, zT, s.eta(), stepNoise, progress);
            return scope.keep(Tensors.clamp(m.decodeLatents(z), 0, 1));                    // [N, 3, H, W]
        }
    }
}
