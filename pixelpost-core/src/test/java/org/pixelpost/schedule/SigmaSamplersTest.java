package org.pixelpost.schedule;

import static org.junit.jupiter.api.Assertions.*;

import org.bytedeco.pytorch.Tensor;
import org.junit.jupiter.api.Test;
import org.pixelpost.sampling.Euler;
import org.pixelpost.sampling.EulerAncestral;
import org.pixelpost.tensor.Generator;
import org.pixelpost.tensor.Tensors;

/**
 * The reference library's own Euler and Euler-ancestral test cases
 * (tests/schedulers/test_scheduler_euler.py and test_scheduler_euler_ancestral.py, 0.30.3): linear
 * 1e-4..0.02 over 1100 steps, 10 steps with linspace spacing, the deterministic sample times the
 * initial noise sigma, the dummy model {@code sample * t / (t + 1)} on the fractional timestep, and
 * the published sums and means. As in those tests, the scaled model input is what the step is given.
 */
class SigmaSamplersTest {
    static NoiseSchedule schedule() {
        return NoiseSchedule.of("linear", 1100, 0.0001, 0.02, false);
    }

    static Tensor loop(SigmaSchedule sch, PredictionType type, Generator g) {
        Tensor x = DdimSchedulerTest.deterministic(false).mul(Tensors.s(sch.initNoiseSigma()));
        float[] sig = sch.sigmas();
        for (int i = 0; i < sch.steps(); i++) {
            float sigma = sig[i], t = sch.timesteps()[i];
            x = x.div(Tensors.s((float) Math.sqrt(sigma * sigma + 1f)));                // scale_model_input
            Tensor out = x.mul(Tensors.s(t)).div(Tensors.s(t + 1f));                    // the dummy model
            Tensor x0 = type == PredictionType.EPSILON ? x.sub(out.mul(Tensors.s(sigma)))
                : out.mul(Tensors.s(-sigma / Math.sqrt(sigma * sigma + 1.0))).add(x.div(Tensors.s(sigma * sigma + 1.0)));
            x = g == null ? Euler.step(x, x0, sigma, sig[i + 1]) : EulerAncestral.step(x, x0, sigma, sig[i + 1], g);
        }
        return x;
    }

    static SigmaSchedule linspace(boolean karras) {
        return SigmaSchedule.of(schedule(), 10, "linspace", 0, karras, "zero");
    }

    @Test
    void eulerFullLoops() {
        DdimSchedulerTest.assertSumMean(loop(linspace(false), PredictionType.EPSILON, null), 10.0807, 0.0131);
        DdimSchedulerTest.assertSumMean(loop(linspace(false), PredictionType.V_PREDICTION, null), 0.0002, 2.2676e-06);
        DdimSchedulerTest.assertSumMean(loop(linspace(true), PredictionType.EPSILON, null), 124.52299499511719, 0.16213932633399963);
    }

    @Test
    void eulerAncestralFullLoops() {
        try (Generator g = Generator.seeded(0)) {
            DdimSchedulerTest.assertSumMean(loop(linspace(false), PredictionType.EPSILON, g), 152.3192, 0.1983);
        }
        try (Generator g = Generator.seeded(0)) {
            DdimSchedulerTest.assertSumMean(loop(linspace(false), PredictionType.V_PREDICTION, g), 108.4439, 0.1412);
        }
    }

    @Test
    void spacingsAsTheReferenceSetsThem() {
        // leading: multiples of 1100 // 10 = 110 plus the offset, descending; trailing: round(1100 - k * 110) - 1
        SigmaSchedule lead = SigmaSchedule.of(schedule(), 10, "leading", 1, false, "zero");
        assertEquals(991f, lead.timesteps()[0]);
        assertEquals(1f, lead.timesteps()[9]);
        SigmaSchedule trail = SigmaSchedule.of(schedule(), 10, "trailing", 0, false, "sigma_min");
        assertEquals(1099f, trail.timesteps()[0]);
        assertEquals(109f, trail.timesteps()[9]);
        float[] train = SigmaSchedule.trainingSigmas(schedule());
        assertEquals(train[0], trail.sigmas()[10], "sigma_min ends at the smallest training sigma");
        assertEquals(train[1099], trail.sigmas()[0]);
        // leading starts from noise of variance sigma^2 + 1, linspace and trailing from sigma
        assertEquals(Math.sqrt((double) lead.sigmas()[0] * lead.sigmas()[0] + 1), lead.initNoiseSigma(), 1e-9);
        assertEquals(trail.sigmas()[0], trail.initNoiseSigma(), 1e-9);
        // Karras sigmas run between the same end points and map back to timesteps inside the training range
        SigmaSchedule k = linspace(true), l = linspace(false);
        assertEquals(l.sigmas()[0], k.sigmas()[0], 1e-4);
        assertEquals(l.sigmas()[9], k.sigmas()[9], 1e-6);
        assertEquals(1099.0, k.timesteps()[0], 1e-3);
        for (int i = 1; i < 10; i++) assertTrue(k.sigmas()[i] < k.sigmas()[i - 1] && k.timesteps()[i] < k.timesteps()[i - 1]);
        assertThrows(IllegalArgumentException.class, () -> SigmaSchedule.of(schedule(), 10, "uniform", 0, false, "zero"));
    }
}
