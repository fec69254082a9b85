package org.pixelpost.model;

import static org.junit.jupiter.api.Assertions.*;

import com.fasterxml.jackson.databind.node.ObjectNode;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.pixelpost.io.check.InvalidValueException;
import org.pixelpost.model.autoencoder.AutoencoderKL;
import org.pixelpost.model.denoiser.DiT;
import org.pixelpost.model.denoiser.UNet2DCondition;
import org.pixelpost.model.text.ClipTextModel;
import org.pixelpost.schedule.DdimScheduler;
import org.pixelpost.schedule.PredictionType;

/** The component configs, bound to the reference libraries' config.json by one mapper. */
class ComponentConfigTest {
    @Test
    void everyConfigReadsBackWhatItWrites() {
        for (UNet2DCondition.Config c : List.of(UNet2DCondition.Config.sd15(), UNet2DCondition.Config.sd2()))
            assertEquals(c, UNet2DCondition.Config.fromJson(c.toJson()));
        assertEquals(AutoencoderKL.Config.sd(), AutoencoderKL.Config.fromJson(AutoencoderKL.Config.sd().toJson()));
        assertEquals(ClipTextModel.Config.vitL14(), ClipTextModel.Config.fromJson(ClipTextModel.Config.vitL14().toJson()));
        for (String n : DiT.Config.names()) assertEquals(DiT.Config.named(n), DiT.Config.fromJson(DiT.Config.named(n).toJson()));
        DdimScheduler.Config sd = DdimScheduler.Config.defaults().withBetas(0.00085, 0.012, "scaled_linear").withPredictionType(PredictionType.V_PREDICTION);
        DdimScheduler.Config back = DdimScheduler.Config.fromJson(sd.toJson());
        assertEquals(sd.toJson(), back.toJson());
        assertEquals("v_prediction", sd.toJson().get("prediction_type").asText());
    }

    @Test
    void theReferenceNamesAndLegacyFormsAreRead() {
        ObjectNode clip = ClipTextModel.Config.vitL14().toJson();
        assertEquals(12, clip.get("num_hidden_layers").asInt(), "transformers' key");
        assertEquals(77, clip.get("max_position_embeddings").asInt());
        // diffusers' legacy attention_head_dim (the head count in SD 1.x) as one int for every level
        ObjectNode u = UNet2DCondition.Config.sd15().toJson();
        assertEquals(8, u.get("attention_head_dim").asInt());
        u.remove("sample_size");
        assertEquals(64, UNet2DCondition.Config.fromJson(u).sampleSize(), "an absent key takes the default");
        u.putArray("attention_head_dim").add(5).add(10).add(20).add(20);
        assertEquals(List.of(5, 10, 20, 20), UNet2DCondition.Config.fromJson(u).attentionHeads());
        // an SD VAE config without shift_factor (null in diffusers' files)
        ObjectNode vae = AutoencoderKL.Config.sd().toJson();
        assertFalse(vae.has("shift_factor"));
        vae.putNull("shift_factor");
        assertEquals(0.0, AutoencoderKL.Config.fromJson(vae).shiftFactor());
    }

    @Test
    void missingAndMistypedKeysAreRefusedByName() {
        ObjectNode clip = ClipTextModel.Config.vitL14().toJson();
        clip.remove("hidden_size");
        assertEquals("hidden_size", assertThrows(InvalidValueException.class, () -> ClipTextModel.Config.fromJson(clip)).key());
        ObjectNode dit = DiT.Config.named("tiny").toJson();
        dit.put("depth", "six");
        InvalidValueException e = assertThrows(InvalidValueException.class, () -> DiT.Config.fromJson(dit));
        assertEquals("depth", e.key());
        assertTrue(e.getMessage().contains("is not an integer"), e.getMessage());
        ObjectNode sched = DdimScheduler.Config.defaults().toJson().put("prediction_type", "noise");
        assertTrue(assertThrows(IllegalArgumentException.class, () -> DdimScheduler.Config.fromJson(sched)).getMessage()
            .contains("is not one of epsilon, v_prediction, sample"));
    }
}
