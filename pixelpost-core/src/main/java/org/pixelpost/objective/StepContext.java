package org.pixelpost.objective;

import java.util.function.UnaryOperator;
import org.bytedeco.pytorch.Tensor;
import org.pixelpost.model.denoiser.Denoiser;
import org.pixelpost.schedule.NoiseSchedule;
import org.pixelpost.schedule.PredictionType;
import org.pixelpost.tensor.Generator;

/**
 * What a loss needs besides the batch: the model being trained, its forward process and
 * prediction type, the frozen decoder from model latents to images in [0, 1] (for the pixel term)
 * and the generator that every draw of the step (timesteps, noise, pixel rows, crops) comes from.
 */
public record StepContext(Denoiser model, NoiseSchedule schedule, PredictionType predictionType,
                          UnaryOperator<Tensor> decode, Generator gen) {
    public StepContext withGenerator(Generator g) {
        return new StepContext(model, schedule, predictionType, decode, g);
    }
}
