package org.pixelpost.train;

import static org.junit.jupiter.api.Assertions.*;

import com.fasterxml.jackson.databind.node.ObjectNode;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import org.junit.jupiter.api.Test;
import org.pixelpost.io.FlatOptions;
import org.pixelpost.io.check.InvalidValueException;

/** The training config: option records by concern, bound flat, each option declared once. */
class TrainConfigTest {
    static ObjectNode minimal() {
        return TrainConfig.JSON.createObjectNode().put("init", "m").put("data", "d").put("out", "o");
    }

    @Test
    void everyOptionIsOneFlatKeyAndOneFlagWhateverItsGroup() {
        List<FlatOptions.Field> fields = FlatOptions.fields(TrainConfig.class);
        Set<String> keys = new HashSet<>();
        for (FlatOptions.Field f : fields) {
            assertTrue(keys.add(f.key()), f.key() + " is declared twice");
            assertFalse(f.help().isBlank(), f.key() + " has help");
            assertEquals("--" + f.key().replace('_', '-'), f.flag());
        }
        assertEquals(56, fields.size());
        // the flat JSON holds every key, and reads back to the same config
        TrainConfig c = TrainConfig.from(minimal().put("pixel_weight", 2.0).put("lora_rank", 4).put("grad_accum", 3));
        ObjectNode j = c.json();
        assertEquals(keys, toSet(j.fieldNames()));
        assertEquals(2.0, c.method().pixelWeight());
        assertEquals(4, c.adapters().loraRank());
        assertEquals(3, c.run().gradAccum());
        assertEquals(c, TrainConfig.from(j));
    }

    @Test
    void defaultsAreThePapersAndTheLibrarysWhereTheyGiveOne() {
        TrainConfig d = TrainConfig.defaults();
        assertEquals(8.0, d.method().pixelWeight()); // lambda for DiT
        assertEquals(5e-6, d.optimizer().weightDecay());
        assertEquals(2500, d.method().beta());
        assertEquals(List.of("attention"), d.adapters().loraTargets());
        assertEquals(List.of(), d.validation().samplePrompts());
        assertNull(d.run().init());
        Trainer.Options o = TrainConfig.from(minimal()).trainerOptions(1000);
        assertEquals(Trainer.Options.defaults().lr(), o.lr());
        assertEquals(Trainer.Options.defaults().adamBeta2(), o.adamBeta2());
    }

    @Test
    void badKeysAndValuesAreRefusedByTheirName() {
        var unknown = assertThrows(InvalidValueException.class, () -> TrainConfig.from(minimal().put("pixel_wieght", 1)));
        assertEquals("pixel_wieght", unknown.key());
        assertTrue(unknown.getMessage().contains("is not a training option"));
        var type = assertThrows(InvalidValueException.class, () -> TrainConfig.from(minimal().put("steps", 1.5)));
        assertTrue(type.getMessage().startsWith("steps: 1.5 is not of the right type; an integer is required"), type.getMessage());
        var nul = assertThrows(InvalidValueException.class, () -> TrainConfig.from(minimal().putNull("lr")));
        assertTrue(nul.getMessage().contains("null is not allowed; a number is required"), nul.getMessage());
        // a rule of a library record, reached through the config, names the config's key
        assertEquals("pixel_fraction", assertThrows(InvalidValueException.class, () -> TrainConfig.from(minimal().put("pixel_fraction", 0))).key());
        assertEquals("ema_decay", assertThrows(InvalidValueException.class, () -> TrainConfig.from(minimal().put("ema_decay", 1))).key());
        assertEquals("lora_dropout", assertThrows(InvalidValueException.class, () -> TrainConfig.from(minimal().put("lora_rank", 2).put("lora_dropout", 1))).key());
        assertEquals("lora_format", assertThrows(InvalidValueException.class, () -> TrainConfig.from(minimal().put("lora_rank", 2).put("lora_format", "zip"))).key());
    }

    private static Set<String> toSet(java.util.Iterator<String> it) {
        Set<String> s = new HashSet<>();
        it.forEachRemaining(s::add);
        return s;
    }
}
