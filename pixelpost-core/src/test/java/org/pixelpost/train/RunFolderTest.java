package org.pixelpost.train;

import static org.junit.jupiter.api.Assertions.*;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.bytedeco.pytorch.Tensor;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.pixelpost.io.check.BadFileException;
import org.pixelpost.io.run.RunLock;
import org.pixelpost.tensor.Tensors;

/** The run folder's files: checkpoints a kill left half done, TensorBoard after a resume, the folder lock. */
class RunFolderTest {
    @TempDir Path dir;

    @Test
    void remnantsOfKilledWritesAndDeletionsAreCleanedAtTheNextCheckpoint() throws Exception {
        Checkpointer c = new Checkpointer(dir.resolve("checkpoints"), 1, 2);
        Map<String, Map<String, Tensor>> parts = Map.of("denoiser", Map.of("w", Tensors.fromFloats(new float[] {1, 2}, 2)));
        var state = new com.fasterxml.jackson.databind.ObjectMapper().createObjectNode().put("step", 1);
        c.save(1, parts, state);
        // a kill during pruning left step-2 without its state, and hidden remnants of a write and a deletion
        Path half = Files.createDirectories(c.dir().resolve("step-000002"));
        Files.writeString(half.resolve("denoiser.safetensors"), "partial");
        Files.createDirectories(c.dir().resolve(".step-000005.tmp"));
        Files.createDirectories(c.dir().resolve(".step-000000.deleting"));
        assertEquals(List.of(c.dir().resolve("step-000001")), c.list(), "the incomplete one is never resumed from");
        c.save(3, parts, state.put("step", 3));
        c.save(4, parts, state.put("step", 4));
        try (var s = Files.list(c.dir())) {
            assertEquals(List.of("step-000003", "step-000004"), s.map(p -> p.getFileName().toString()).sorted().toList());
        }
    }

    @Test
    void checkpointsAreOrderedByStepNotByName() throws Exception {
        Checkpointer c = new Checkpointer(dir.resolve("ck"), 1, 5);
        Map<String, Map<String, Tensor>> parts = Map.of("denoiser", Map.of("w", Tensors.fromFloats(new float[] {1}, 1)));
        var state = new com.fasterxml.jackson.databind.ObjectMapper().createObjectNode();
        c.save(999_999, parts, state.put("step", 999_999));
        c.save(1_000_000, parts, state.put("step", 1_000_000));
        assertEquals(c.dir().resolve("step-1000000"), c.resolve("latest"));
    }

    @Test
    void aResumedRunDropsTheEventsLoggedPastItsCheckpoint() throws Exception {
        Path tb = dir.resolve("tensorboard");
        try (TensorBoard w = new TensorBoard(tb)) {
            for (long s = 1; s <= 10; s++) w.scalars(s, Map.of("loss", 1.0 / s));
        }
        TensorBoard.dropAfter(tb, 6);
        List<Long> steps = new ArrayList<>();
        try (var s = Files.list(tb)) {
            for (Path f : s.toList()) steps.addAll(TensorBoardReader.steps(f));
        }
        assertEquals(List.of(1L, 2L, 3L, 4L, 5L, 6L), steps);
    }

    @Test
    void aFolderIsLockedWhileARunHoldsIt() throws Exception {
        try (RunLock lock = RunLock.acquire(dir)) {
            BadFileException e = assertThrows(BadFileException.class, () -> RunLock.acquire(dir));
            assertTrue(e.getMessage().contains("in use by another run") && e.getMessage().contains("process " + ProcessHandle.current().pid()), e.getMessage());
        }
        RunLock.acquire(dir).close(); // released: taken again
    }

    /** Reads the steps of an event file's records (the events that have one). */
    static final class TensorBoardReader {
        static List<Long> steps(Path f) throws Exception {
            java.nio.ByteBuffer b = java.nio.ByteBuffer.wrap(Files.readAllBytes(f)).order(java.nio.ByteOrder.LITTLE_ENDIAN);
            List<Long> out = new ArrayList<>();
            while (b.remaining() >= 12) {
                long len = b.getLong();
                b.getInt();
                byte[] data = new byte[(int) len];
                b.get(data);
                b.getInt();
                Long s = TensorBoard.stepOf(data);
                if (s != null) out.add(s);
            }
            return out;
        }
    }
}
