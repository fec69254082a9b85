package org.pixelpost.schedule;

/** What the denoiser outputs, named as in the reference library's {@code prediction_type}. */
public enum PredictionType {
    EPSILON("epsilon"), V_PREDICTION("v_prediction"), SAMPLE("sample");

    public final String configName;

    PredictionType(String configName) {
        this.configName = configName;
    }

    @com.fasterxml.jackson.annotation.JsonValue
    public String configName() {
        return configName;
    }

    @com.fasterxml.jackson.annotation.JsonCreator
    public static PredictionType of(String name) {
        for (PredictionType p : values()) if (p.configName.equals(name)) return p;
        throw new IllegalArgumentException("prediction_type '" + name + "' is not one of epsilon, v_prediction, sample");
    }
}
