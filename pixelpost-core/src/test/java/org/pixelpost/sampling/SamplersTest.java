package org.pixelpost.sampling;

import static org.junit.jupiter.api.Assertions.*;

import java.util.List;
import java.util.Map;
import org.bytedeco.pytorch.Tensor;
import org.junit.jupiter.api.Test;
import org.pixelpost.io.check.InvalidValueException;
import org.pixelpost.schedule.DdimScheduler;
import org.pixelpost.schedule.NoiseSchedule;
import org.pixelpost.schedule.SigmaSchedule;
import org.pixelpost.tensor.Engine;
import org.pixelpost.tensor.Generator;
import org.pixelpost.tensor.Scope;
import org.pixelpost.tensor.Tensors;

/**
 * Every sampler against the exact solution of the probability-flow ODE for Gaussian data
 * {@code z0 ~ N(mu, v)}: with the optimal noise prediction
 * {@code epsHat = sqrt(1 - alphaBar) (z_t - sqrt(alphaBar) mu) / (alphaBar v + 1 - alphaBar)}, the ODE keeps
 * {@code u = (x_sigma - mu) / sqrt(v + sigma^2)} fixed (in sigma space), so it ends at {@code mu + sqrt(v) u}.
 */
class SamplersTest {
    static final double MU = 0.7, V = 0.25;
    static final DdimScheduler.Config SD = DdimScheduler.Config.defaults().withBetas(0.00085, 0.012, "scaled_linear").withClipSample(false)
        .withSetAlphaToOne(false).withStepsOffset(1);

    /** The optimal epsilon prediction at (fractional) timestep t, its sigma interpolated as the samplers do. */
    static Denoise optimal(NoiseSchedule s) {
        float[] train = SigmaSchedule.trainingSigmas(s);
        return (z, t) -> {
            double sigma = interp(t, train), ab = 1 / (1 + sigma * sigma);
            return z.sub(Tensors.s(Math.sqrt(ab) * MU)).mul(Tensors.s(Math.sqrt(1 - ab) / (ab * V + 1 - ab)));
        };
    }

    static double interp(double t, float[] table) {
        int j = (int) Math.floor(t);
        if (j >= table.length - 1) return table[table.length - 1];
        return table[j] + (t - j) * ((double) table[j + 1] - table[j]);
    }

    /** The distance of a sampler's result from the exact end point, from the same unit noise. */
    static double error(Samplers.Spec spec, int steps) {
        Engine.start();
        NoiseSchedule s = new DdimScheduler(SD).schedule();
        try (Scope sc = Scope.open(); Generator g = Generator.seeded(11)) {
            Tensor z = g.randn(2, 4, 4, 4);
            Tensor out = Samplers.sample(spec, SD, steps, optimal(s), z, 0, g, k -> { try (Generator r = Generator.seeded(k)) { return r.randn(2, 4, 4, 4); } }, null);
            // where the sampler's first step starts in sigma space, and the u it fixes
            String name = spec.name();
            if (name.equals("dpmpp_2m") || name.equals("ddim")) {
                DdimScheduler ddim = new DdimScheduler(SD);
                ddim.setTimesteps(steps);
                int t0 = name.equals("ddim") ? (int) ddim.timesteps()[0]
                    : (int) SigmaSchedule.multistep(s, steps, SD.timestepSpacing(), SD.stepsOffset(), spec.options().containsKey("use_karras_sigmas"), "zero").timesteps()[0];
                double ab = s.alphaBar(t0), sigma = Math.sqrt((1 - ab) / ab);
                Tensor xSigma = z.div(Tensors.s(Math.sqrt(ab)));                             // the VP start in sigma space
                Tensor exact = xSigma.sub(Tensors.s(MU)).div(Tensors.s(Math.sqrt(V + sigma * sigma))).mul(Tensors.s(Math.sqrt(V))).add(Tensors.s(MU));
                return Tensors.item(out.sub(exact).abs().max());
            }
            SigmaSchedule sch = SigmaSchedule.of(s, steps, SD.timestepSpacing(), SD.stepsOffset(), false, "zero");
            double start = sch.sigmas()[0];
            Tensor xSigma = z.mul(Tensors.s(sch.initNoiseSigma()));
            Tensor exact = xSigma.sub(Tensors.s(MU)).div(Tensors.s(Math.sqrt(V + start * start))).mul(Tensors.s(Math.sqrt(V))).add(Tensors.s(MU));
            return Tensors.item(out.sub(exact).abs().max());
        }
    }

    @Test
    void deterministicSamplersConvergeToTheExactSolution() {
        for (String name : List.of("ddim", "euler", "dpmpp_2m")) {
            Samplers.Spec spec = new Samplers.Spec(name, Map.of());
            double e10 = error(spec, 10), e50 = error(spec, 50), e200 = error(spec, 200);
            assertTrue(e200 < 0.03, name + ": 200 steps end " + e200 + " from the exact solution");
            assertTrue(e200 < e50 && e50 < e10, name + ": more steps, a smaller error (" + e10 + ", " + e50 + ", " + e200 + ")");
        }
        // the second-order solver is the more accurate at few steps, as its order says
        assertTrue(error(new Samplers.Spec("dpmpp_2m", Map.of()), 10) < error(new Samplers.Spec("euler", Map.of()), 10));
    }

    @Test
    void badSamplersAndOptionsAreNamed() {
        InvalidValueException e = assertThrows(InvalidValueException.class, () -> Samplers.Spec.parse("heun9", List.of()));
        assertTrue(e.getMessage().contains("--sampler") && e.getMessage().contains("dpmpp_2m"), e.getMessage());
        e = assertThrows(InvalidValueException.class, () -> Samplers.Spec.parse("euler_a", List.of("use_karras_sigmas=true")));
        assertTrue(e.getMessage().contains("use_karras_sigmas") && e.getMessage().contains("euler_a"), e.getMessage());
        e = assertThrows(InvalidValueException.class, () -> Samplers.Spec.parse("dpmpp_2m", List.of("solver_order=4")));
        assertTrue(e.getMessage().contains("solver_order=4"), e.getMessage());
        e = assertThrows(InvalidValueException.class, () -> Samplers.Spec.parse("dpmpp_2m", List.of("karras")));
        assertTrue(e.getMessage().contains("KEY=VALUE"), e.getMessage());
        Samplers.Spec third = Samplers.Spec.parse("dpmpp_2m", List.of("solver_order=3"));
        e = assertThrows(InvalidValueException.class, () -> Samplers.checkSteps(third, 2));
        assertEquals("--steps", e.key());
    }
}
