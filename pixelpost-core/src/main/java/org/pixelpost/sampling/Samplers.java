package org.pixelpost.sampling;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.function.IntFunction;
import org.bytedeco.pytorch.Tensor;
import org.pixelpost.io.check.InvalidValueException;
import org.pixelpost.schedule.DdimScheduler;
import org.pixelpost.schedule.NoiseSchedule;
import org.pixelpost.schedule.PredictionType;
import org.pixelpost.schedule.SigmaSchedule;
import org.pixelpost.tensor.Generator;
import org.pixelpost.tensor.Scope;
import org.pixelpost.tensor.Tensors;

/**
 * The samplers by name, one registry line each, and the loops that run their step functions. The
 * noise schedule, prediction type, {@code timestep_spacing} and {@code steps_offset} come from the
 * model's scheduler config, as the reference library's {@code from_config} carries them over;
 * a sampler's options (the reference library's names) override.
 */
public final class Samplers {
    private Samplers() {}

    /** A sampler and its options ({@code use_karras_sigmas=true}, ...), checked against the registry. */
    public record Spec(String name, Map<String, String> options) {
        public Spec {
            if (!OPTIONS.containsKey(name))
                throw new InvalidValueException("--sampler", "'" + name + "' is not one of " + String.join(", ", OPTIONS.keySet()));
            options = Map.copyOf(options);
            for (Map.Entry<String, String> e : options.entrySet()) {
                if (!OPTIONS.get(name).contains(e.getKey()))
                    throw new InvalidValueException("--sampler-option", "'" + e.getKey() + "' is not an option of " + name
                        + (OPTIONS.get(name).isEmpty() ? " (it takes none)" : "; it takes " + String.join(", ", OPTIONS.get(name))));
                check(e.getKey(), e.getValue());
            }
        }

        public static Spec ddim() {
            return new Spec("ddim", Map.of());
        }

        /** {@code KEY=VALUE} pairs as {@code --sampler-option} gives them. */
        public static Spec parse(String name, List<String> pairs) {
            Map<String, String> o = new LinkedHashMap<>();
            for (String p : pairs) {
                int eq = p.indexOf('=');
                if (eq <= 0) throw new InvalidValueException("--sampler-option", "'" + p + "' is not KEY=VALUE");
                o.put(p.substring(0, eq).strip(), p.substring(eq + 1).strip());
            }
            return new Spec(name.toLowerCase(java.util.Locale.ROOT), o);
        }

        String get(String key, String fallback) {
            return options.getOrDefault(key, fallback);
        }

        boolean flag(String key, boolean fallback) {
            return Boolean.parseBoolean(get(key, Boolean.toString(fallback)));
        }

        int order() {
            return name.equals("dpmpp_2m") ? Integer.parseInt(get("solver_order", "2")) : 1;
        }
    }

    /** The registry: each sampler and the options it takes. */
    static final Map<String, Set<String>> OPTIONS = new LinkedHashMap<>();
    static {
        OPTIONS.put("ddim", Set.of());
        OPTIONS.put("euler", Set.of("use_karras_sigmas", "timestep_spacing", "steps_offset", "final_sigmas_type"));
        OPTIONS.put("euler_a", Set.of("timestep_spacing", "steps_offset"));
        OPTIONS.put("dpmpp_2m", Set.of("solver_order", "lower_order_final", "euler_at_final", "use_karras_sigmas", "final_sigmas_type",
            "solver_type", "timestep_spacing", "steps_offset"));
    }

    public static List<String> names() {
        return List.copyOf(OPTIONS.keySet());
    }

    static void check(String key, String v) {
        switch (key) {
            case "use_karras_sigmas", "lower_order_final", "euler_at_final" -> {
                if (!v.equals("true") && !v.equals("false")) throw new InvalidValueException("--sampler-option", key + "=" + v + " is not true or false");
            }
            case "timestep_spacing" -> {
                if (!Set.of("leading", "trailing", "linspace").contains(v))
                    throw new InvalidValueException("--sampler-option", key + "=" + v + " is not leading, trailing or linspace");
            }
            case "final_sigmas_type" -> {
                if (!v.equals("zero") && !v.equals("sigma_min")) throw new InvalidValueException("--sampler-option", key + "=" + v + " is not zero or sigma_min");
            }
            case "solver_type" -> {
                if (!v.equals("midpoint") && !v.equals("heun")) throw new InvalidValueException("--sampler-option", key + "=" + v + " is not midpoint or heun");
            }
            case "solver_order" -> {
                if (!Set.of("1", "2", "3").contains(v)) throw new InvalidValueException("--sampler-option", key + "=" + v + " is not 1, 2 or 3");
            }
            case "steps_offset" -> {
                try {
                    if (Integer.parseInt(v) < 0) throw new NumberFormatException();
                } catch (NumberFormatException e) {
                    throw new InvalidValueException("--sampler-option", key + "=" + v + " is not a non-negative integer");
                }
            }
            default -> { }
        }
    }

    /** Refuses a step count the sampler cannot run (below a multistep solver's order). */
    public static void checkSteps(Spec spec, int steps) {
        if (steps < spec.order())
            throw new InvalidValueException("--steps", steps + " is below " + spec.name() + "'s solver order " + spec.order());
    }

    /**
     * Runs {@code spec} for {@code steps} steps from unit noise {@code zT} and returns the final
     * latents. {@code rowNoise.apply(k)} gives the stochastic samplers' fresh noise at step {@code k},
     * one row per image from that image's own generator; DDIM with {@code eta > 0} draws from {@code gen}.
     */
    public static Tensor sample(Spec spec, DdimScheduler.Config config, int steps, Denoise denoise, Tensor zT, double eta, Generator gen,
                                IntFunction<Tensor> rowNoise, DdimLoop.Progress progress) {
        checkSteps(spec, steps);
        if (spec.name().equals("ddim")) return DdimLoop.sample(config, steps, denoise, zT, eta, gen, progress);
        NoiseSchedule schedule = new DdimScheduler(config).schedule();
        PredictionType type = config.predictionType();
        String spacing = spec.get("timestep_spacing", config.timestepSpacing());
        int offset = Integer.parseInt(spec.get("steps_offset", Integer.toString(config.stepsOffset())));
        boolean karras = spec.flag("use_karras_sigmas", false);
        String fin = spec.get("final_sigmas_type", "zero");
        if (spec.name().equals("dpmpp_2m")) {
            SigmaSchedule sch = SigmaSchedule.multistep(schedule, steps, spacing, offset, karras, fin);
            int order = spec.order();
            boolean midpoint = spec.get("solver_type", "midpoint").equals("midpoint");
            boolean lowerFinal = spec.flag("lower_order_final", true), eulerFinal = spec.flag("euler_at_final", false);
            List<Tensor> x0s = new ArrayList<>();
            Tensor x = zT;
            for (int i = 0; i < steps; i++) {
                try (Scope s = Scope.open()) {
                    Tensor out = denoise.apply(x, sch.timesteps()[i]);                      // [B, C, h, w]
                    Tensor x0 = s.keep(DpmSolverPlusPlus.x0Hat(type, out, x, sch.sigmas()[i]));
                    x0s.add(0, x0);
                    if (x0s.size() > order) x0s.remove(x0s.size() - 1); // freed with the caller's scope, as every kept step is
                    int o = DpmSolverPlusPlus.order(order, i, steps, Math.min(i, order), lowerFinal, fin.equals("zero"), eulerFinal);
                    x = s.keep(DpmSolverPlusPlus.step(x, x0s, sch.sigmas(), i, o, midpoint));  // [B, C, h, w]
                }
                if (progress != null) progress.step(i + 1, steps);
            }
            return x;
        }
        boolean ancestral = spec.name().equals("euler_a");
        if (ancestral && type == PredictionType.SAMPLE) // as the reference library's ancestral Euler
            throw new InvalidValueException("--sampler", "euler_a does not take a model that predicts the sample (prediction_type sample)");
        SigmaSchedule sch = SigmaSchedule.of(schedule, steps, spacing, offset, !ancestral && karras, ancestral ? "zero" : fin);
        float[] sig = sch.sigmas();
        Tensor x = zT.mul(Tensors.s(sch.initNoiseSigma()));
        for (int i = 0; i < steps; i++) {
            try (Scope s = Scope.open()) {
                float sigma = sig[i];
                double c = Math.sqrt((double) sigma * sigma + 1);
                Tensor out = denoise.apply(x.div(Tensors.s(c)), sch.timesteps()[i]);     // the model sees x / sqrt(sigma^2 + 1)
                Tensor x0 = switch (type) {
                    case EPSILON -> x.sub(out.mul(Tensors.s(sigma)));
                    case V_PREDICTION -> out.mul(Tensors.s(-sigma / c)).add(x.div(Tensors.s(c * c)));
                    case SAMPLE -> out;
                };
                x = s.keep(ancestral ? EulerAncestral.step(x, x0, sigma, sig[i + 1], rowNoise.apply(i)) : Euler.step(x, x0, sigma, sig[i + 1]));
            }
            if (progress != null) progress.step(i + 1, steps);
        }
        return x;
    }
}
