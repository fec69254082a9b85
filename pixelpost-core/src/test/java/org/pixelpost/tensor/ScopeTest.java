package org.pixelpost.tensor;

import static org.junit.jupiter.api.Assertions.*;

import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;
import org.junit.jupiter.api.Test;

class ScopeTest {
    @Test
    void keptTensorsOutliveTheirScopeAndOthersAreFreed() {
        Engine.start();
        try (Scope outer = Scope.open()) {
            Tensor kept, dropped;
            try (Scope inner = Scope.open()) {
                kept = inner.keep(torch.ones(4).mul(Tensors.s(3)));
                dropped = torch.ones(4);
            }
            assertTrue(dropped.isNull(), "a tensor not kept is freed with its scope");
            assertEquals(12.0, Tensors.item(kept.sum()));
            Tensor chain = kept;
            for (int i = 0; i < 3; i++) {
                try (Scope step = Scope.open()) {
                    chain = step.keep(chain.add(Tensors.s(1)));
                }
            }
            assertEquals(24.0, Tensors.item(chain.sum()));
        }
    }

    @Test
    void nativeMemoryStaysFlatOverManyScopedSteps() {
        Engine.start();
        long before = org.bytedeco.javacpp.Pointer.physicalBytes();
        for (int i = 0; i < 200; i++) {
            try (Scope s = Scope.open()) {
                torch.randn(256, 1024).mul(Tensors.s(2)).sum(); // 1 MiB per tensor, several per step
            }
        }
        long grown = org.bytedeco.javacpp.Pointer.physicalBytes() - before;
        assertTrue(grown < 64L << 20, "resident memory grew by " + (grown >> 20) + " MiB over 200 steps");
    }
}
