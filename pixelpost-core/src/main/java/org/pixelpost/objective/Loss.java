package org.pixelpost.objective;

import java.util.Map;
import org.bytedeco.pytorch.Tensor;

/** The scalar to back-propagate and the terms to log, by name. */
public record Loss(Tensor loss, Map<String, Double> terms) {}
