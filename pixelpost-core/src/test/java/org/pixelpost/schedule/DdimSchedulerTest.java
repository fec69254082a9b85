package org.pixelpost.schedule;

import static org.junit.jupiter.api.Assertions.*;

import java.nio.file.Files;
import java.nio.file.Path;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.pixelpost.tensor.Engine;
import org.pixelpost.tensor.Tensors;

/**
 * The reference library's own DDIM scheduler test cases (tests/schedulers/test_scheduler_ddim.py):
 * its config (linear 1e-4..0.02 over 1000 steps, clip_sample), its deterministic sample and noise,
 * its dummy model {@code sample * t / (t + 1)}, and its published sums and means with its tolerances.
 */
class DdimSchedulerTest {
    static DdimScheduler.Config base() {
        return DdimScheduler.Config.defaults().withClipSample(true);
    }

    /** arange(4*3*8*8) reshaped (C, H, W, B), divided by the count, permuted to (B, C, H, W); flipped for the noise. */
    static Tensor deterministic(boolean flip) {
        Engine.start();
        long n = 4 * 3 * 8 * 8;
        Tensor a = torch.arange(new org.bytedeco.pytorch.Scalar(n));
        if (flip) a = a.flip(0);
        return a.reshape(3, 8, 8, 4).div(Tensors.s(n)).permute(3, 0, 1, 2);
    }

    static Tensor model(Tensor sample, long t) {
        return sample.mul(Tensors.s(t)).div(Tensors.s(t + 1));
    }

    static Tensor fullLoop(DdimScheduler.Config config) {
        DdimScheduler s = new DdimScheduler(config);
        s.setTimesteps(10);
        Tensor sample = deterministic(false);
        for (long t : s.timesteps()) sample = s.step(model(sample, t), t, sample).prevSample();
        return sample;
    }

    static double maxDiff(Tensor a, Tensor b) {
        return Tensors.item(a.sub(b).abs().max());
    }

    static void assertSumMean(Tensor sample, double sum, double mean) {
        Tensor abs = sample.abs();
        assertEquals(sum, Tensors.item(abs.sum()), 1e-2, "sum of |sample|");
        assertEquals(mean, Tensors.item(abs.mean()), 1e-3, "mean of |sample|");
    }

    @Test
    void fullLoopNoNoise() {
        assertSumMean(fullLoop(base()), 172.0067, 0.223967);
    }

    @Test
    void fullLoopWithVPrediction() {
        assertSumMean(fullLoop(base().withPredictionType(PredictionType.V_PREDICTION)), 52.5302, 0.0684);
    }

    @Test
    void fullLoopWithAndWithoutAlphaToOne() {
        assertSumMean(fullLoop(base().withSetAlphaToOne(true).withBetas(0.01, 0.02, "linear")), 149.8295, 0.1951);
        assertSumMean(fullLoop(base().withSetAlphaToOne(false).withBetas(0.01, 0.02, "linear")), 149.0784, 0.1941);
    }

    @Test
    void fullLoopWithNoise() {
        DdimScheduler s = new DdimScheduler(base());
        s.setTimesteps(10);
        long[] ts = s.timesteps();
        int tStart = 8;
        Tensor sample = s.schedule().addNoise(deterministic(false), deterministic(true),
            torch.full(new long[] {4}, new org.bytedeco.pytorch.Scalar(ts[tStart])).to(torch.ScalarType.Long));
        for (int i = tStart; i < ts.length; i++) sample = s.step(model(sample, ts[i]), ts[i], sample).prevSample();
        assertSumMean(sample, 354.5418, 0.4616);
    }

    @Test
    void stepsOffset() {
        DdimScheduler s = new DdimScheduler(base().withStepsOffset(1));
        s.setTimesteps(5);
        assertArrayEquals(new long[] {801, 601, 401, 201, 1}, s.timesteps());
    }

    @Test
    void variance() {
        DdimScheduler s = new DdimScheduler(base());
        assertEquals(0.0, s.variance(0, 0), 1e-5);
        assertEquals(0.14771, s.variance(420, 400), 1e-5);
        assertEquals(0.32460, s.variance(980, 960), 1e-5);
        assertEquals(0.00979, s.variance(487, 486), 1e-5);
        assertEquals(0.02, s.variance(999, 998), 1e-5);
    }

    @Test
    void timestepSpacings() {
        DdimScheduler s = new DdimScheduler(base().withTimestepSpacing("trailing"));
        s.setTimesteps(10);
        assertArrayEquals(new long[] {999, 899, 799, 699, 599, 499, 399, 299, 199, 99}, s.timesteps());
        s = new DdimScheduler(base().withTimestepSpacing("linspace"));
        s.setTimesteps(10); // linspace(0, 999, 10) = 0, 111, ..., 999
        assertArrayEquals(new long[] {999, 888, 777, 666, 555, 444, 333, 222, 111, 0}, s.timesteps());
        s = new DdimScheduler(base());
        s.setTimesteps(50);
        assertEquals(980, s.timesteps()[0]);
        assertEquals(0, s.timesteps()[49]);
    }

    @Test
    void zeroStepsAreRefused() {
        DdimScheduler s = new DdimScheduler(base());
        assertThrows(IllegalArgumentException.class, () -> s.setTimesteps(0));
        assertThrows(IllegalArgumentException.class, () -> s.setTimesteps(1001));
    }

    @Test
    void zeroSnrRescaleEndsAtZeroSignal() {
        NoiseSchedule n = new DdimScheduler(base().withRescaleBetasZeroSnr(true)).schedule();
        assertEquals(0.0, n.alphaBar(999), 1e-12);
        assertEquals(new DdimScheduler(base()).schedule().alphaBar(0), n.alphaBar(0), 1e-7);
    }

    @Test
    void readsTheReferenceConfigFile(@TempDir Path dir) throws Exception {
        Path f = dir.resolve("scheduler_config.json");
        // Stable Diffusion 1.5's scheduler_config.json, as published
        Files.writeString(f, "{\"_class_name\": \"PNDMScheduler\", \"_diffusers_version\": \"0.6.0\", \"beta_end\": 0.012,"
            + " \"beta_schedule\": \"scaled_linear\", \"beta_start\": 0.00085, \"num_train_timesteps\": 1000,"
            + " \"set_alpha_to_one\": false, \"skip_prk_steps\": true, \"steps_offset\": 1, \"trained_betas\": null, \"clip_sample\": false}");
        DdimScheduler.Config c = DdimScheduler.Config.read(f);
        assertEquals("scaled_linear", c.betaSchedule());
        assertEquals(1, c.stepsOffset());
        assertFalse(c.setAlphaToOne());
        assertEquals("leading", c.timestepSpacing());
        DdimScheduler s = new DdimScheduler(c);
        s.setTimesteps(50);
        assertEquals(981, s.timesteps()[0]);
        // scaled_linear: beta_t = (sqrt(b0) + t/(T-1) (sqrt(b1) - sqrt(b0)))^2
        double b500 = Math.pow(Math.sqrt(0.00085) + 500.0 / 999 * (Math.sqrt(0.012) - Math.sqrt(0.00085)), 2);
        assertEquals(b500, s.schedule().beta(500), 1e-8);
        DdimScheduler.Config back = DdimScheduler.Config.fromJson(c.toJson());
        assertEquals(c.toJson(), back.toJson());
        Files.writeString(f, "{\"timestep_spacing\": \"sideways\"}");
        var e = assertThrows(org.pixelpost.io.check.BadFileException.class, () -> DdimScheduler.Config.read(f));
        assertTrue(e.getMessage().contains("sideways"), e.getMessage());
    }

    @Test
    void forwardProcessAndConversionsAgree() {
        NoiseSchedule n = NoiseSchedule.sd();
        Engine.seed(5);
        Tensor z = torch.randn(3, 4, 2, 2), eps = torch.randn(3, 4, 2, 2);
        Tensor t = Tensors.fromFloats(new float[] {0, 500, 999}, 3).to(torch.ScalarType.Long);
        Tensor zt = n.addNoise(z, eps, t);
        // by hand for the middle element
        double a = n.alphaBar(500);
        float[] zf = Tensors.toFloats(z.select(0, 1)), ef = Tensors.toFloats(eps.select(0, 1)), ztf = Tensors.toFloats(zt.select(0, 1));
        for (int i = 0; i < zf.length; i++) assertEquals(Math.sqrt(a) * zf[i] + Math.sqrt(1 - a) * ef[i], ztf[i], 1e-5);
        assertEquals(a / (1 - a), n.snr(500), 1e-9);
        for (PredictionType p : PredictionType.values()) {
            Tensor out = n.target(p, z, eps, t);
            // recovering eps from a sample prediction divides by sqrt(1 - alphaBar_0) ~ 0.03: looser there
            assertTrue(maxDiff(n.epsilon(p, out, zt, t), eps) < (p == PredictionType.SAMPLE ? 1e-2 : 1e-4), p.toString());
            assertTrue(maxDiff(n.sample(p, out, zt, t), z) < 1e-3, p.toString());
        }
    }
}
