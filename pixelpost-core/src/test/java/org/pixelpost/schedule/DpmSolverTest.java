package org.pixelpost.schedule;

import static org.junit.jupiter.api.Assertions.*;

import java.util.ArrayList;
import java.util.List;
import org.bytedeco.pytorch.Tensor;
import org.junit.jupiter.api.Test;
import org.pixelpost.sampling.DpmSolverPlusPlus;
import org.pixelpost.tensor.Tensors;

/**
 * DPM-Solver++ multistep against the reference library: its own published full-loop means
 * (tests/schedulers/test_scheduler_dpm_multi.py, 0.30.3: linear 1e-4..0.02 over 1000 steps, order 2,
 * midpoint, final sigma sigma_min, 10 steps, the deterministic sample, the dummy model
 * {@code sample * t / (t + 1)}), and full loops of diffusers 0.30.3 itself for the other options
 * (made with {@code ../shared/peer}: the sum and mean of |sample| after 10 steps).
 */
class DpmSolverTest {
    record Options(int order, boolean midpoint, boolean lowerOrderFinal, String finalSigma, String spacing, int offset, boolean karras,
                   PredictionType type) {}

    static Options published() {
        return new Options(2, true, false, "sigma_min", "linspace", 0, false, PredictionType.EPSILON);
    }

    static Tensor loop(Options o) {
        SigmaSchedule sch = SigmaSchedule.multistep(NoiseSchedule.of("linear", 1000, 0.0001, 0.02, false), 10, o.spacing(), o.offset(),
            o.karras(), o.finalSigma());
        Tensor x = DdimSchedulerTest.deterministic(false);
        List<Tensor> x0s = new ArrayList<>();
        for (int i = 0; i < sch.steps(); i++) {
            float t = sch.timesteps()[i];
            Tensor out = x.mul(Tensors.s(t)).div(Tensors.s(t + 1f));                    // the dummy model
            x0s.add(0, DpmSolverPlusPlus.x0Hat(o.type(), out, x, sch.sigmas()[i]));
            int order = DpmSolverPlusPlus.order(o.order(), i, sch.steps(), Math.min(i, o.order()), o.lowerOrderFinal(),
                o.finalSigma().equals("zero"), false);
            x = DpmSolverPlusPlus.step(x, x0s, sch.sigmas(), i, order, o.midpoint());
        }
        return x;
    }

    static void assertMean(Tensor x, double mean) {
        assertEquals(mean, Tensors.item(x.abs().mean()), 1e-3, "mean of |sample|");
    }

    @Test
    void thePublishedFullLoops() {
        assertMean(loop(published()), 0.3301);
        Options v = new Options(2, true, false, "sigma_min", "linspace", 0, false, PredictionType.V_PREDICTION);
        assertMean(loop(v), 0.2251);
        Options karrasV = new Options(2, true, false, "sigma_min", "linspace", 0, true, PredictionType.V_PREDICTION);
        assertMean(loop(karrasV), 0.2096);
    }

    @Test
    void fullLoopsOfTheReferenceLibraryForTheOtherOptions() {
        Object[][] cases = {
            // order, midpoint, lower_order_final, final sigma, spacing, offset, karras, prediction, sum, mean
            {2, true, false, "zero", "linspace", 0, false, PredictionType.EPSILON, 185.011353, 0.24090020},
            {2, true, false, "zero", "linspace", 0, false, PredictionType.V_PREDICTION, 75.661972, 0.09851819},
            {2, true, false, "zero", "linspace", 0, true, PredictionType.EPSILON, 226.185837, 0.29451281},
            {3, true, false, "zero", "linspace", 0, false, PredictionType.EPSILON, 188.045715, 0.24485119},
            {1, true, false, "zero", "linspace", 0, false, PredictionType.EPSILON, 169.929459, 0.22126232},
            {2, false, false, "zero", "linspace", 0, false, PredictionType.EPSILON, 186.746948, 0.24316008},
            {3, true, true, "sigma_min", "linspace", 0, false, PredictionType.EPSILON, 190.171082, 0.24761860},
            {2, true, false, "zero", "trailing", 0, false, PredictionType.SAMPLE, 727.461975, 0.94721609},
            {2, true, false, "zero", "leading", 1, true, PredictionType.V_PREDICTION, 160.656204, 0.20918776},
        };
        for (Object[] c : cases) {
            Options o = new Options((int) c[0], (boolean) c[1], (boolean) c[2], (String) c[3], (String) c[4], (int) c[5], (boolean) c[6],
                (PredictionType) c[7]);
            Tensor x = loop(o);
            assertEquals((double) c[8], Tensors.item(x.abs().sum()), 1e-2, o.toString());
            assertEquals((double) c[9], Tensors.item(x.abs().mean()), 1e-4, o.toString());
        }
    }

    @Test
    void timestepsAsTheReferenceSetsThem() {
        NoiseSchedule s = NoiseSchedule.of("linear", 1000, 0.0001, 0.02, false);
        float[] lin = SigmaSchedule.multistep(s, 10, "linspace", 0, false, "zero").timesteps();
        assertArrayEquals(new float[] {999, 899, 799, 699, 599, 500, 400, 300, 200, 100}, lin);
        float[] karras = SigmaSchedule.multistep(s, 10, "linspace", 0, true, "zero").timesteps();
        assertArrayEquals(new float[] {999, 937, 864, 775, 663, 511, 301, 102, 18, 0}, karras);
        float[] trailing = SigmaSchedule.multistep(s, 10, "trailing", 0, false, "zero").timesteps();
        assertArrayEquals(new float[] {999, 899, 799, 699, 599, 499, 399, 299, 199, 99}, trailing);
        SigmaSchedule leading = SigmaSchedule.multistep(s, 10, "leading", 1, false, "zero");
        assertArrayEquals(new float[] {901, 811, 721, 631, 541, 451, 361, 271, 181, 91}, leading.timesteps());
        assertEquals(61.37885284423828, leading.sigmas()[0], 1e-4);
    }

    @Test
    void zeroTerminalSnrSchedulesStayFinite() {
        // the reference library takes the last alphaBar of a rescaled schedule as 2^-24: sigma_max 4096 (diffusers 0.30.3's values)
        NoiseSchedule z = NoiseSchedule.of("scaled_linear", 1000, 0.00085, 0.012, true);
        SigmaSchedule euler = SigmaSchedule.of(z, 10, "trailing", 0, false, "zero");
        assertEquals(4095.999755859375, euler.sigmas()[0], 1e-3);
        assertEquals(4095.999755859375, euler.initNoiseSigma(), 1e-3);
        SigmaSchedule karras = SigmaSchedule.multistep(z, 10, "trailing", 0, true, "zero");
        assertEquals(4095.999755859375, karras.sigmas()[0], 1e-3);
        assertArrayEquals(new float[] {999, 998, 997}, java.util.Arrays.copyOf(karras.timesteps(), 3));
    }
}
