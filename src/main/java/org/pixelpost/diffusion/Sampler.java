package org.pixelpost.diffusion;

import java.util.ArrayList;
import java.util.List;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorVector;
import org.bytedeco.pytorch.global.torch;
import org.pixelpost.model.autoencoder.Autoencoder;
import org.pixelpost.model.denoiser.Denoiser;
import org.pixelpost.model.text.TextEncoder;
import org.pixelpost.tensor.Engine;
import org.pixelpost.tensor.Scope;
import org.pixelpost.tensor.Tensors;

/**
 * Text-to-image sampling with DDIM and classifier-free guidance, as the reference pipelines do it:
 * the unconditional (empty prompt) and conditional passes go through the denoiser as one batch,
 * and {@code out = uncond + g (cond - uncond)} when {@code g > 1}.
 */
public final class Sampler {
    public record Settings(int steps, double guidance, double eta) {
        public Settings {
            if (steps <= 0) throw new IllegalArgumentException("--steps must be positive");
            if (eta < 0) throw new IllegalArgumentException("--eta must be >= 0");
        }
    }

    /** Told after every step. */
    public interface Progress {
        void step(int done, int total);
    }

    private final Denoiser denoiser;
    private final Autoencoder autoencoder;
    private final TextEncoder textEncoder;
    private final DdimScheduler.Config schedulerConfig;
    private final int latentSize;
    private final double latentScale;

    public Sampler(Denoiser denoiser, Autoencoder autoencoder, TextEncoder textEncoder, DdimScheduler.Config schedulerConfig,
                   int imageSize, double latentScale) {
        this.denoiser = denoiser;
        this.autoencoder = autoencoder;
        this.textEncoder = textEncoder;
        this.schedulerConfig = schedulerConfig;
        this.latentSize = imageSize / autoencoder.downsampling();
        this.latentScale = latentScale;
    }

    /** Starting noise, one image per seed: an image depends on its seed alone, not on its batch. */
    public Tensor initialNoise(long[] seeds) {
        List<Tensor> z = new ArrayList<>();
        for (long seed : seeds) {
            Engine.seed(seed);
            z.add(torch.randn(1, autoencoder.latentChannels(), latentSize, latentSize));
        }
        return torch.cat(new TensorVector(z.toArray(new Tensor[0])), 0);
    }

    /** Images {@code [N, 3, H, W]} in [0, 1], image k for {@code prompts[k]} from noise seeded by {@code seeds[k]}. */
    public Tensor sample(List<String> prompts, long[] seeds, Settings s, Progress progress) {
        if (seeds.length != prompts.size()) throw new IllegalArgumentException(seeds.length + " seeds for " + prompts.size() + " prompts");
        try (Scope scope = Scope.open(); var g = Tensors.noGrad()) {
            int n = prompts.size();
            DdimScheduler scheduler = new DdimScheduler(schedulerConfig);
            scheduler.setTimesteps(s.steps());
            Tensor z = initialNoise(seeds);
            Engine.seed(seeds[0] ^ 0x5DEECE66DL); // stochastic steps (eta > 0) draw from here
            boolean cfg = s.guidance() > 1;
            List<String> all = new ArrayList<>();
            if (cfg) for (int i = 0; i < n; i++) all.add("");
            all.addAll(prompts);
            TextEncoder.Encoded text = textEncoder.encode(all);
            long[] ts = scheduler.timesteps();
            for (int k = 0; k < ts.length; k++) {
                try (Scope step = Scope.open()) {
                    Tensor in = cfg ? torch.cat(new TensorVector(z, z), 0) : z;
                    Tensor t = torch.full(new long[] {in.size(0)}, new org.bytedeco.pytorch.Scalar(ts[k])).to(torch.ScalarType.Long);
                    Tensor out = denoiser.forward(in, t, text.tokens(), text.mask());
                    if (cfg) {
                        Tensor u = out.narrow(0, 0, n), c = out.narrow(0, n, n);
                        out = u.add(c.sub(u).mul(Tensors.s(s.guidance())));
                    }
                    z = step.keep(scheduler.step(out, ts[k], z, s.eta()).prevSample());
                }
                if (progress != null) progress.step(k + 1, ts.length);
            }
            Tensor images = Tensors.clamp(autoencoder.decode(z.div(Tensors.s(latentScale))), 0, 1);
            return scope.keep(images);
        }
    }
}
