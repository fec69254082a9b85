package org.pixelpost.demo;

import java.util.List;

/**
 * The demo's budget. {@code guidance} is used where no sweep result is at hand; the demo samples
 * with the guidance its sweep over {@code guidanceSweep} picks on validation prompts. {@link #full()} is the paper's experiment scaled to a 2-core CPU;
 * {@link #quick()} runs every stage with tiny budgets, as a smoke test.
 */
public record Plan(String name, int trainLimit, String baseSize, int baseSteps, int baseBatch, double baseLr,
                   int sftSteps, int sftBatch, double sftLr, int prefSteps, int prefBatch, double prefLr, double beta, double simpoBeta,
                   int headlineSeeds, int pairPrompts, int samplesPerPrompt, int pairSteps,
                   int evalPrompts, int evalSeeds, int evalSteps, double guidance, int denoiseImages, List<Double> lambdas,
                   double headlineLambda, List<Double> guidanceSweep, int sweepPrompts, int aeSteps, int aeBatch, double aeLr) {
    /** The lossy regime's autoencoder: 4 latent channels at f8 (48x compression, as SD's VAE), narrow so that a 2-core CPU trains it in minutes. */
    public static final org.pixelpost.model.autoencoder.AutoencoderKL.Config AUTOENCODER = new org.pixelpost.model.autoencoder.AutoencoderKL.Config(
        3, 3, List.of(16, 32, 64, 64), 1, 4, 8, 1.0, 0.0, true);


    public static Plan full() {
        return new Plan("full", 0, "tiny", 8000, 32, 4e-4, 200, 8, 5e-5, 100, 4, 1e-5, 2500, 100,
            3, 160, 5, 25, 32, 2, 50, 4.5, 64, List.of(1.0, 2.0, 8.0), 2.0, List.of(1.0, 1.5, 2.0, 3.0, 4.5, 7.0), 32, 2000, 8, 1e-3);
    }

    public static Plan quick() {
        return new Plan("quick", 48, "tiny", 30, 8, 4e-4, 4, 4, 5e-5, 3, 2, 1e-5, 2500, 100,
            1, 6, 2, 4, 6, 1, 6, 4.5, 8, List.of(1.0, 2.0, 8.0), 2.0, List.of(1.0, 3.0, 7.0), 4, 20, 4, 1e-3);
    }
}
