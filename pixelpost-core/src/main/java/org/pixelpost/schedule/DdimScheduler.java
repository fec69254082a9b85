package org.pixelpost.schedule;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Set;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;
import org.pixelpost.io.check.BadFileException;
import org.pixelpost.tensor.Generator;
import org.pixelpost.tensor.Tensors;

/**
 * DDIM (Song et al. 2021) with the reference library's {@code DDIMScheduler} semantics: the same
 * options, names (in camelCase) and defaults, so a {@code scheduler_config.json} gives the same
 * timesteps and the same numbers.
 */
public final class DdimScheduler {
    /** The options of {@code DDIMScheduler}, defaults included. */
    public record Config(int numTrainTimesteps, double betaStart, double betaEnd, String betaSchedule,
                         float[] trainedBetas, boolean clipSample, double clipSampleRange, boolean setAlphaToOne,
                         int stepsOffset, PredictionType predictionType, boolean thresholding,
                         double dynamicThresholdingRatio, double sampleMaxValue, String timestepSpacing,
                         boolean rescaleBetasZeroSnr) {
        public Config {
            if (!Set.of("leading", "trailing", "linspace").contains(timestepSpacing))
                throw new IllegalArgumentException("timestep_spacing '" + timestepSpacing + "' is not one of leading, trailing, linspace");
        }

        public static Config defaults() {
            return new Config(1000, 0.0001, 0.02, "linear", null, true, 1.0, true, 0, PredictionType.EPSILON,
                false, 0.995, 1.0, "leading", false);
        }

        public Config withNumTrainTimesteps(int v) { return new Config(v, betaStart, betaEnd, betaSchedule, trainedBetas, clipSample, clipSampleRange, setAlphaToOne, stepsOffset, predictionType, thresholding, dynamicThresholdingRatio, sampleMaxValue, timestepSpacing, rescaleBetasZeroSnr); }
        public Config withBetas(double start, double end, String schedule) { return new Config(numTrainTimesteps, start, end, schedule, trainedBetas, clipSample, clipSampleRange, setAlphaToOne, stepsOffset, predictionType, thresholding, dynamicThresholdingRatio, sampleMaxValue, timestepSpacing, rescaleBetasZeroSnr); }
        public Config withClipSample(boolean v) { return new Config(numTrainTimesteps, betaStart, betaEnd, betaSchedule, trainedBetas, v, clipSampleRange, setAlphaToOne, stepsOffset, predictionType, thresholding, dynamicThresholdingRatio, sampleMaxValue, timestepSpacing, rescaleBetasZeroSnr); }
        public Config withSetAlphaToOne(boolean v) { return new Config(numTrainTimesteps, betaStart, betaEnd, betaSchedule, trainedBetas, clipSample, clipSampleRange, v, stepsOffset, predictionType, thresholding, dynamicThresholdingRatio, sampleMaxValue, timestepSpacing, rescaleBetasZeroSnr); }
        public Config withStepsOffset(int v) { return new Config(numTrainTimesteps, betaStart, betaEnd, betaSchedule, trainedBetas, clipSample, clipSampleRange, setAlphaToOne, v, predictionType, thresholding, dynamicThresholdingRatio, sampleMaxValue, timestepSpacing, rescaleBetasZeroSnr); }
        public Config withPredictionType(PredictionType v) { return new Config(numTrainTimesteps, betaStart, betaEnd, betaSchedule, trainedBetas, clipSample, clipSampleRange, setAlphaToOne, stepsOffset, v, thresholding, dynamicThresholdingRatio, sampleMaxValue, timestepSpacing, rescaleBetasZeroSnr); }
        public Config withTimestepSpacing(String v) { return new Config(numTrainTimesteps, betaStart, betaEnd, betaSchedule, trainedBetas, clipSample, clipSampleRange, setAlphaToOne, stepsOffset, predictionType, thresholding, dynamicThresholdingRatio, sampleMaxValue, v, rescaleBetasZeroSnr); }
        public Config withRescaleBetasZeroSnr(boolean v) { return new Config(numTrainTimesteps, betaStart, betaEnd, betaSchedule, trainedBetas, clipSample, clipSampleRange, setAlphaToOne, stepsOffset, predictionType, thresholding, dynamicThresholdingRatio, sampleMaxValue, timestepSpacing, v); }

        /** Reads {@code scheduler_config.json}; keys the scheduler does not use ({@code _class_name}, ...) are ignored. */
        public static Config read(Path file) throws IOException {
            JsonNode j;
            try {
                j = new ObjectMapper().readTree(file.toFile());
            } catch (IOException e) {
                throw new BadFileException(file, "malformed scheduler config (" + e.getMessage() + ")");
            }
            if (j == null || !j.isObject()) throw new BadFileException(file, "scheduler config is not a JSON object");
            try {
                return fromJson(j);
            } catch (IllegalArgumentException e) {
                throw new BadFileException(file, e.getMessage());
            }
        }

        /** diffusers' {@code scheduler_config.json}; absent keys are DDIMScheduler's defaults. */
        public static Config fromJson(JsonNode j) {
            return org.pixelpost.io.ConfigJson.read(Config.class, j, defaults());
        }

        public ObjectNode toJson() {
            ObjectNode j = new ObjectMapper().createObjectNode().put("_class_name", "DDIMScheduler");
            j.setAll(org.pixelpost.io.ConfigJson.write(this));
            return j;
        }

        public NoiseSchedule schedule() {
            if (trainedBetas != null) return new NoiseSchedule(rescaleBetasZeroSnr ? NoiseSchedule.rescaleZeroTerminalSnr(trainedBetas) : trainedBetas);
            return NoiseSchedule.of(betaSchedule, numTrainTimesteps, betaStart, betaEnd, rescaleBetasZeroSnr);
        }
    }

    /** The result of one step: {@code x_{t-1}} and the predicted {@code x_0}. */
    public record Step(Tensor prevSample, Tensor predOriginalSample) {}

    private final Config config;
    private final NoiseSchedule schedule;
    private final float finalAlphaCumprod;
    private int numInferenceSteps;
    private long[] timesteps;

    public DdimScheduler(Config config) {
        this.config = config;
        this.schedule = config.schedule();
        this.finalAlphaCumprod = config.setAlphaToOne ? 1f : (float) schedule.alphaBar(0);
        this.timesteps = new long[config.numTrainTimesteps];
        for (int i = 0; i < timesteps.length; i++) timesteps[i] = timesteps.length - 1 - i;
    }

    public Config config() { return config; }
    public NoiseSchedule schedule() { return schedule; }
    public long[] timesteps() { return timesteps.clone(); }
    public int numInferenceSteps() { return numInferenceSteps; }

    /** Chooses the {@code n} timesteps of sampling, spaced as {@code timestepSpacing} says. */
    public void setTimesteps(int n) {
        int T = config.numTrainTimesteps;
        if (n <= 0) throw new IllegalArgumentException("num_inference_steps must be positive, got " + n);
        if (n > T) throw new IllegalArgumentException("num_inference_steps " + n + " exceeds num_train_timesteps " + T);
        long[] ts = new long[n];
        switch (config.timestepSpacing) {
            case "linspace" -> {
                for (int i = 0; i < n; i++) {
                    double v = n == 1 ? 0 : i * ((double) (T - 1) / (n - 1)); // as np.linspace
                    ts[n - 1 - i] = Math.round(Math.rint(v)); // numpy rounds half to even
                }
            }
            case "leading" -> {
                int ratio = T / n;
                for (int i = 0; i < n; i++) ts[n - 1 - i] = (long) i * ratio + config.stepsOffset;
            }
            default -> { // trailing: np.round(np.arange(T, 0, -T / n)) - 1
                double ratio = (double) T / n;
                for (int i = 0; i < n; i++) ts[i] = (long) Math.rint(T - i * ratio) - 1;
            }
        }
        this.numInferenceSteps = n;
        this.timesteps = ts;
    }

    private float alphaProd(long t) {
        return t >= 0 ? (float) schedule.alphaBar((int) t) : finalAlphaCumprod;
    }

    /** {@code sigma_t^2 / eta^2} between {@code t} and {@code prev} (DDIM formula 16). */
    public double variance(long t, long prev) {
        float a = alphaProd(t), ap = alphaProd(prev);
        float b = 1f - a, bp = 1f - ap;
        return (bp / b) * (1f - a / ap);
    }

    /** A deterministic step ({@code eta = 0}). */
    public Step step(Tensor modelOutput, long t, Tensor sample) {
        return step(modelOutput, t, sample, 0, false, null);
    }

    /** A step whose noise ({@code eta > 0}) is drawn from {@code gen}. */
    public Step step(Tensor modelOutput, long t, Tensor sample, double eta, Generator gen) {
        Tensor noise = eta > 0 ? gen.randnLike(modelOutput) : null;
        return step(modelOutput, t, sample, eta, false, noise);
    }

    /**
     * One reverse step from {@code t}. With {@code eta > 0}, {@code varianceNoise} (shaped like the
     * sample) is the fresh noise of the step.
     */
    public Step step(Tensor modelOutput, long t, Tensor sample, double eta, boolean useClippedModelOutput, Tensor varianceNoise) {
        if (numInferenceSteps == 0) throw new IllegalStateException("call setTimesteps before step");
        long prev = t - config.numTrainTimesteps / numInferenceSteps;
        float a = alphaProd(t), ap = alphaProd(prev), b = 1f - a;
        double sa = Math.sqrt(a), sb = Math.sqrt(b);
        Tensor x0, eps;
        switch (config.predictionType) {
            case EPSILON -> {
                x0 = sample.sub(modelOutput.mul(Tensors.s(sb))).div(Tensors.s(sa));
                eps = modelOutput;
            }
            case SAMPLE -> {
                x0 = modelOutput;
                eps = sample.sub(x0.mul(Tensors.s(sa))).div(Tensors.s(sb));
            }
            default -> {
                x0 = sample.mul(Tensors.s(sa)).sub(modelOutput.mul(Tensors.s(sb)));
                eps = modelOutput.mul(Tensors.s(sa)).add(sample.mul(Tensors.s(sb)));
            }
        }
        if (config.thresholding) x0 = threshold(x0);
        else if (config.clipSample) x0 = Tensors.clamp(x0, -config.clipSampleRange, config.clipSampleRange);
        double std = eta * Math.sqrt(variance(t, prev));
        if (useClippedModelOutput) eps = sample.sub(x0.mul(Tensors.s(sa))).div(Tensors.s(sb));
        Tensor direction = eps.mul(Tensors.s(Math.sqrt(1 - ap - std * std)));
        Tensor prevSample = x0.mul(Tensors.s(Math.sqrt(ap))).add(direction);
        if (eta > 0) {
            if (varianceNoise == null) throw new IllegalArgumentException("a stochastic step (eta " + eta + ") needs its noise");
            prevSample = prevSample.add(varianceNoise.mul(Tensors.s(std)));
        }
        return new Step(prevSample, x0);
    }

    /** Dynamic thresholding (Saharia et al. 2022): clamp each sample at a quantile of its magnitudes. */
    private Tensor threshold(Tensor x0) {
        long[] shape = Tensors.shape(x0);
        Tensor flat = x0.reshape(shape[0], -1);
        Tensor s = torch.quantile(flat.abs(), config.dynamicThresholdingRatio, new org.bytedeco.pytorch.LongOptional(1), false, "linear");
        s = Tensors.clamp(s, 1, config.sampleMaxValue).unsqueeze(1);
        Tensor out = torch.maximum(torch.minimum(flat, s), s.neg()).div(s);
        return out.reshape(shape);
    }

    @Override
    public String toString() {
        return "DdimScheduler" + Arrays.toString(timesteps);
    }

}
