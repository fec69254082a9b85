package org.pixelpost.tensor;

import java.util.ArrayList;
import java.util.List;
import org.bytedeco.javacpp.Pointer;
import org.bytedeco.javacpp.PointerScope;

/**
 * A native-memory scope for one step: every tensor made inside is freed when it closes, except
 * the ones handed to {@link #keep}, which move to the enclosing scope (or to the garbage
 * collector when there is none). Without a scope per step native memory grew by gigabytes.
 */
public final class Scope implements AutoCloseable {
    private final PointerScope scope;
    private final List<Pointer> kept = new ArrayList<>();

    private Scope() {
        Engine.start();
        this.scope = new PointerScope();
    }

    public static Scope open() {
        return new Scope();
    }

    /** Keeps {@code p} alive past this scope. */
    public <P extends Pointer> P keep(P p) {
        p.retainReference(); // detach() drops the scope's reference; this one replaces it
        scope.detach(p);
        kept.add(p);
        return p;
    }

    @Override
    public void close() {
        scope.close();
        PointerScope outer = PointerScope.getInnerScope();
        if (outer == null) return; // kept tensors are then freed by the garbage collector
        for (Pointer p : kept) {
            outer.attach(p);
            p.releaseReference();
        }
    }
}
