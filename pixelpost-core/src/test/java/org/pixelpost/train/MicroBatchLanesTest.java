package org.pixelpost.train;

import static org.junit.jupiter.api.Assertions.*;

import com.fasterxml.jackson.databind.node.ObjectNode;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ExecutorService;
import java.util.function.Function;
import org.junit.jupiter.api.Test;
import org.pixelpost.io.check.InvalidValueException;
import org.pixelpost.objective.Objective;
import org.pixelpost.objective.PixelTerm;
import org.pixelpost.objective.Sft;
import org.pixelpost.pipeline.TextToImageModel;
import org.pixelpost.tensor.Engine;

/**
 * Micro-batches side by side on their own threads ({@code --concurrent-micro-batches}) train as
 * the same micro-batches one after another: the same data and draws per slot, gradients added in
 * slot order. Kernels on one thread may round their reductions differently from two, so the
 * comparison is to float precision; a second run with lanes repeats the first bit for bit.
 */
@org.junit.jupiter.api.Tag("slow") // end to end: left out of the fast lane (mvn -Pfast test)
class MicroBatchLanesTest {
    void assertLanesTrainAsSequential(Function<TextToImageModel, Objective> objective, boolean pairs, int accum, String what) throws Exception {
        List<Double> seq = new ArrayList<>(), lanes = new ArrayList<>(), again = new ArrayList<>();
        float[] sequential = DataParallelTest.train(1, accum, 1, objective, pairs, seq).get(0);
        float[] side = DataParallelTest.train(1, accum, 2, objective, pairs, lanes).get(0);
        float[] repeat = DataParallelTest.train(1, accum, 2, objective, pairs, again).get(0);
        double rel = DataParallelTest.relDiff(sequential, side), moved;
        try (TextToImageModel start = DataParallelTest.model(0)) {
            moved = DataParallelTest.relDiff(sequential, DataParallelTest.weights(start));
        }
        System.out.printf("%s, accumulation %d, %d steps: 2 lanes against one after another: max |diff| / max |w| = %.2e (the weights moved by %.2e)%n",
            what, accum, DataParallelTest.STEPS, rel, moved);
        assertArrayEquals(side, repeat, what + ": a run with lanes repeats exactly");
        assertEquals(lanes, again, what + ": and logs the same losses");
        assertTrue(moved > 1e-2, "the weights moved: " + moved);
        // the same sums in the same order; only the kernels' own rounding on one thread instead of two differs
        assertTrue(rel < 2e-5, what + ": lanes against sequential micro-batches, relative difference " + rel);
        for (int i = 0; i < DataParallelTest.STEPS; i++)
            assertEquals(seq.get(i), lanes.get(i), 1e-5 * Math.abs(seq.get(i)), what + ": the logged loss of step " + (i + 1));
    }

    @Test
    void twoLanesTrainAsTwoMicroBatchesInTurnWithThePixelTerm() throws Exception {
        assertLanesTrainAsSequential(ref -> new Sft(1, PixelTerm.of(2)), false, 2, "SFT + pixel");
    }

    @Test
    void twoLanesOverFourMicroBatchesWithDpo() throws Exception {
        assertLanesTrainAsSequential(DataParallelTest::dpoPixel, true, 4, "DPO + pixel");
    }

    @Test
    void lanesInsideEachOfTwoDataParallelRanks() throws Exception {
        List<Double> seq = new ArrayList<>(), lanes = new ArrayList<>();
        List<float[]> inTurn = DataParallelTest.train(2, 2, 1, ref -> new Sft(1, PixelTerm.of(2)), false, seq);
        List<float[]> atOnce = DataParallelTest.train(2, 2, 2, ref -> new Sft(1, PixelTerm.of(2)), false, lanes);
        assertArrayEquals(atOnce.get(0), atOnce.get(1), "both ranks end with the same weights");
        double rel = DataParallelTest.relDiff(inTurn.get(0), atOnce.get(0));
        System.out.printf("2 ranks x 2 micro-batches: at once against in turn: max |diff| / max |w| = %.2e%n", rel);
        assertTrue(rel < 2e-5, "2 ranks, lanes against micro-batches in turn: relative difference " + rel);
        for (int i = 0; i < DataParallelTest.STEPS; i++) assertEquals(seq.get(i), lanes.get(i), 1e-5 * Math.abs(seq.get(i)), "the logged loss of step " + (i + 1));
    }

    @Test
    void aFailingLaneIsReportedOnceEveryLaneHasEnded() {
        java.util.concurrent.atomic.AtomicBoolean slowLaneDone = new java.util.concurrent.atomic.AtomicBoolean();
        try (MicroBatchLanes lanes = new MicroBatchLanes(2, List.of(), 0)) {
            var e = assertThrows(IllegalStateException.class, () -> lanes.run(2, 1, (lane, g) -> {
                if (lane == 1) throw new IllegalStateException("lane 1 broke");
                try {
                    Thread.sleep(300);
                } catch (InterruptedException ie) {
                    throw new RuntimeException(ie);
                }
                slowLaneDone.set(true);
                throw new IllegalStateException("lane 0 broke too");
            }));
            assertEquals("lane 0 broke too", e.getMessage(), "the first lane's error, in lane order");
            assertEquals("lane 1 broke", e.getSuppressed()[0].getMessage(), "the other's kept with it");
            assertTrue(slowLaneDone.get(), "the error surfaced only after the slow lane had ended");
        }
    }

    @Test
    void laneThreadsShareTheCoresAndLeaveTheOtherThreadsAsTheyWere() throws Exception {
        int before = Engine.threadsOfThisThread();
        ExecutorService pool = Engine.threadPool(2, 1, "test-lane");
        try {
            for (int i = 0; i < 4; i++) assertEquals(1, pool.submit(Engine::threadsOfThisThread).get(), "a lane runs libtorch on one thread");
            assertEquals(before, Engine.threadsOfThisThread(), "this thread keeps its threads");
            assertEquals(Engine.threads(), Engine.threadsOfThisThread());
        } finally {
            pool.shutdownNow();
        }
    }

    @Test
    void refusesWhatLanesCannotRun() throws Exception {
        try (TextToImageModel m = DataParallelTest.model(0)) {
            DataParallelTest.Data data = DataParallelTest.Data.make(m);
            Trainer.Options o = Trainer.Options.defaults().withSteps(1);
            Trainer.Options accum2 = new Trainer.Options(1, 2, o.lr(), o.adamBeta1(), o.adamBeta2(), o.adamEps(), o.weightDecay(), 0, false, 1, 0, false, 0, 0);
            try (Trainer t = new Trainer(m, data.slots(4, false), new Sft(1, PixelTerm.of(0)), accum2)) {
                var e = assertThrows(IllegalArgumentException.class, () -> t.concurrentMicroBatches(3));
                assertTrue(e.getMessage().contains("3 does not divide grad_accum 2"), e.getMessage()); // the one rule the config checks too
                assertThrows(IllegalArgumentException.class, () -> t.concurrentMicroBatches(0));
            }
        }
        ObjectNode j = TrainConfig.JSON.createObjectNode().put("init", "m").put("data", "d").put("out", "o");
        j.put("concurrent_micro_batches", 2).put("grad_accum", 3);
        var odd = assertThrows(InvalidValueException.class, () -> TrainConfig.from(j));
        assertTrue(odd.getMessage().contains("concurrent_micro_batches") && odd.getMessage().contains("does not divide grad_accum 3"), odd.getMessage());
        j.put("grad_accum", 2).put("lora_rank", 4);
        var lora = assertThrows(InvalidValueException.class, () -> TrainConfig.from(j));
        assertTrue(lora.getMessage().contains("LoRA"), lora.getMessage());
        j.put("lora_rank", 0).put("device", "cuda");
        assertTrue(assertThrows(InvalidValueException.class, () -> TrainConfig.from(j)).getMessage().contains("is for the CPU"));
        j.put("device", "cpu").put("gradient_checkpointing", true);
        assertTrue(assertThrows(InvalidValueException.class, () -> TrainConfig.from(j)).getMessage().contains("gradient_checkpointing"));
        j.put("gradient_checkpointing", false);
        assertEquals(2, TrainConfig.from(j).run().concurrentMicroBatches());
    }
}
