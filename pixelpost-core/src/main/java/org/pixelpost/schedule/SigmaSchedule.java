package org.pixelpost.schedule;

import java.util.Set;

/**
 * The noise levels of a sampling run in sigma space ({@code x = z0 + sigma eps}, {@code sigma_t =
 * sqrt((1 - alphaBar_t) / alphaBar_t)}), as the reference library's Euler-family schedulers set
 * them: the inference timesteps by {@code timestep_spacing}, their sigmas interpolated linearly
 * over the training sigmas (or Karras et al.'s rho = 7 spacing between the same end points, the
 * timesteps then mapped back from each sigma), and a final sigma of 0 or the smallest training
 * sigma. Float32 where the reference library keeps float32, so the values agree with it.
 *
 * @param sigmas {@code steps + 1} noise levels, the last the final one
 * @param timesteps {@code steps} (fractional) model timesteps, one per sigma but the last
 * @param initNoiseSigma the standard deviation of the starting noise
 */
public record SigmaSchedule(float[] sigmas, float[] timesteps, double initNoiseSigma) {
    static final Set<String> SPACINGS = Set.of("leading", "trailing", "linspace");
    static final Set<String> FINAL = Set.of("zero", "sigma_min");

    public int steps() {
        return timesteps.length;
    }

    /**
     * The training sigmas {@code sqrt((1 - alphaBar) / alphaBar)} in float32. A zero-terminal-SNR
     * schedule's last {@code alphaBar} is 0 (infinite sigma); it is taken as {@code 2^-24}, as the
     * reference library's samplers take it.
     */
    public static float[] trainingSigmas(NoiseSchedule s) {
        float[] out = new float[s.numTrainTimesteps()];
        for (int t = 0; t < out.length; t++) {
            float a = (float) s.alphaBar(t);
            if (a == 0f) a = 0x1p-24f;
            out[t] = (float) Math.sqrt((1f - a) / a);
        }
        return out;
    }

    /**
     * The schedule of {@code steps} steps.
     *
     * @param spacing {@code linspace}, {@code leading} or {@code trailing}
     * @param karras Karras et al.'s sigmas ({@code use_karras_sigmas})
     * @param finalSigma {@code zero} or {@code sigma_min} ({@code final_sigmas_type})
     */
    public static SigmaSchedule of(NoiseSchedule s, int steps, String spacing, int stepsOffset, boolean karras, String finalSigma) {
        int n = check(s, steps, spacing, finalSigma);
        float[] train = trainingSigmas(s);
        float[] ts = new float[steps];
        for (int i = 0; i < steps; i++) {
            ts[i] = switch (spacing) {
                case "linspace" -> (float) (steps == 1 ? 0 : (steps - 1 - i) * ((double) (n - 1) / (steps - 1)));
                case "leading" -> (float) ((long) (steps - 1 - i) * (n / steps) + stepsOffset);
                default -> (float) (Math.rint(n - i * ((double) n / steps)) - 1);
            };
        }
        if (spacing.equals("linspace") && steps > 1) ts[0] = n - 1; // numpy's linspace ends exactly at its stop
        double[] sig = new double[steps];
        for (int i = 0; i < steps; i++) sig[i] = interp(ts[i], train);
        if (karras) {
            double max = sig[0], min = sig[steps - 1], rho = 7;
            double maxInv = Math.pow(max, 1 / rho), minInv = Math.pow(min, 1 / rho);
            float[] log = new float[n];
            for (int t = 0; t < n; t++) log[t] = (float) Math.log(train[t]);
            for (int i = 0; i < steps; i++) {
                double ramp = steps == 1 ? 0 : (double) i / (steps - 1);
                sig[i] = Math.pow(maxInv + ramp * (minInv - maxInv), rho);
                ts[i] = (float) sigmaToT(sig[i], log);
            }
        }
        float[] sigmas = new float[steps + 1];
        for (int i = 0; i < steps; i++) sigmas[i] = (float) sig[i];
        sigmas[steps] = finalSigma.equals("zero") ? 0f : train[0];
        float max = 0;
        for (float v : sigmas) max = Math.max(max, v);
        double init = spacing.equals("leading") ? Math.sqrt((double) max * max + 1) : max;
        return new SigmaSchedule(sigmas, ts, init);
    }

    /**
     * The schedule of the reference library's multistep solvers ({@code DPMSolverMultistepScheduler},
     * {@code UniPCMultistepScheduler}): integer timesteps, {@code linspace} over {@code steps + 1}
     * points with the last dropped, {@code leading} by {@code n / (steps + 1)}; Karras sigmas span the
     * whole training range and their timesteps are rounded.
     */
    public static SigmaSchedule multistep(NoiseSchedule s, int steps, String spacing, int stepsOffset, boolean karras, String finalSigma) {
        int n = check(s, steps, spacing, finalSigma);
        float[] train = trainingSigmas(s);
        float[] ts = new float[steps];
        for (int i = 0; i < steps; i++) {
            ts[i] = switch (spacing) {
                case "linspace" -> (float) Math.rint((steps - i) * ((double) (n - 1) / steps));
                case "leading" -> (float) ((long) (steps - i) * (n / (steps + 1)) + stepsOffset);
                default -> (float) (Math.rint(n - i * ((double) n / steps)) - 1);
            };
        }
        if (spacing.equals("linspace")) ts[0] = n - 1; // numpy's linspace ends exactly at its stop
        double[] sig = new double[steps];
        if (karras) {
            float[] log = new float[n];
            for (int t = 0; t < n; t++) log[t] = (float) Math.log(train[t]);
            double max = train[n - 1], min = train[0], rho = 7;
            double maxInv = Math.pow(max, 1 / rho), minInv = Math.pow(min, 1 / rho);
            for (int i = 0; i < steps; i++) {
                double ramp = steps == 1 ? 0 : (double) i / (steps - 1);
                sig[i] = Math.pow(maxInv + ramp * (minInv - maxInv), rho);
                ts[i] = (float) Math.rint(sigmaToT(sig[i], log));
            }
        } else {
            for (int i = 0; i < steps; i++) sig[i] = interp(ts[i], train); // clamped at the end, as numpy's interp
        }
        float[] sigmas = new float[steps + 1];
        for (int i = 0; i < steps; i++) sigmas[i] = (float) sig[i];
        sigmas[steps] = finalSigma.equals("zero") ? 0f : train[0];
        return new SigmaSchedule(sigmas, ts, 1.0);
    }

    /** The training steps, after checking the options against them. */
    private static int check(NoiseSchedule s, int steps, String spacing, String finalSigma) {
        if (!SPACINGS.contains(spacing)) throw new IllegalArgumentException("timestep_spacing '" + spacing + "' is not one of leading, trailing, linspace");
        if (!FINAL.contains(finalSigma)) throw new IllegalArgumentException("final_sigmas_type '" + finalSigma + "' is not zero or sigma_min");
        int n = s.numTrainTimesteps();
        if (steps < 1 || steps > n) throw new IllegalArgumentException("steps: " + steps + " is not within 1.." + n);
        return n;
    }

    /** numpy's {@code interp(t, arange(n), table)}. */
    static double interp(double t, float[] table) {
        if (t <= 0) return table[0];
        if (t >= table.length - 1) return table[table.length - 1];
        int j = (int) Math.floor(t);
        double slope = (double) table[j + 1] - table[j];
        return slope * (t - j) + table[j];
    }

    /** The fractional timestep of {@code sigma}: linear in log sigma between the two training steps around it. */
    static double sigmaToT(double sigma, float[] logSigmas) {
        double ls = Math.log(Math.max(sigma, 1e-10));
        int low = 0;
        for (int i = 0; i < logSigmas.length; i++) if (ls - logSigmas[i] >= 0) low = i;
        low = Math.min(low, logSigmas.length - 2);
        double lo = logSigmas[low], hi = logSigmas[low + 1];
        double w = Math.min(1, Math.max(0, (lo - ls) / (lo - hi)));
        return (1 - w) * low + w * (low + 1);
    }
}
