package org.pixelpost.sampling;

import org.bytedeco.pytorch.Tensor;
import org.pixelpost.schedule.DdimScheduler;
import org.pixelpost.tensor.Generator;
import org.pixelpost.tensor.Scope;

/** The DDIM sampling loop over any denoise function, as a small pure function. */
public final class DdimLoop {
    private DdimLoop() {}

    /** Told after every step. */
    @FunctionalInterface
    public interface Progress {
        void step(int done, int total);
    }

    /**
     * Runs {@code steps} DDIM steps from {@code zT} (pure noise at the first timestep) and returns the
     * final latents. Stochastic steps ({@code eta > 0}) draw their noise from {@code gen}.
     */
    public static Tensor sample(DdimScheduler.Config config, int steps, Denoise denoise, Tensor zT, double eta, Generator gen,
                                Progress progress) {
        DdimScheduler scheduler = new DdimScheduler(config);
        scheduler.setTimesteps(steps);
        long[] ts = scheduler.timesteps();
        Tensor z = zT;
        for (int k = 0; k < ts.length; k++) {
            try (Scope step = Scope.open()) {
                Tensor out = denoise.apply(z, ts[k]);                                         // [B, C, h, w]
                z = step.keep(scheduler.step(out, ts[k], z, eta, gen).prevSample());          // [B, C, h, w]
            }
            if (progress != null) progress.step(k + 1, ts.length);
        }
        return z;
    }
}
