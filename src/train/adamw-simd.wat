;; The AdamW update of src/train/optim.ts for float32 tensors, in WebAssembly SIMD: two float64
;; lanes per f64x2 op, with the JavaScript loop's arithmetic in its order (promote each float32
;; to float64, no fused multiply-add, IEEE division and square root, round to nearest on the
;; float32 stores), so every stored value is the JavaScript loop's, bit for bit:
;;   m' = b1*m + ob1*g        v' = b2*v + (ob2*g)*g
;;   d  = (m'/bc1) / (sqrt(v'/bc2) + eps)
;;   p' = (p - step*d) - decay*p
;; Built into adamw-simd-bytes.ts by `npx tsx tools/build-wasm.ts` (wabt); tests/adamw-simd.test.ts
;; checks the committed bytes and the bit-equality.
(module
  (memory (export "memory") 1)

  ;; n floats at byte offsets p, g, m, v (16-byte aligned): p, m, v updated in place.
  (func (export "adamw")
    (param $n i32) (param $p i32) (param $g i32) (param $m i32) (param $v i32)
    (param $b1 f64) (param $ob1 f64) (param $b2 f64) (param $ob2 f64) (param $bc1 f64) (param $bc2 f64)
    (param $eps f64) (param $step f64) (param $decay f64)
    (local $o i32) (local $end i32)
    (local $gv v128) (local $mv v128) (local $vv v128) (local $pv v128)
    (local $g2 v128) (local $m2 v128) (local $v2 v128) (local $p2 v128)
    (local $mlo v128) (local $vlo v128) (local $plo v128)
    (local $B1 v128) (local $OB1 v128) (local $B2 v128) (local $OB2 v128) (local $BC1 v128) (local $BC2 v128)
    (local $EPS v128) (local $STEP v128) (local $DEC v128)
    (local $gs f64) (local $ms f64) (local $vs f64) (local $ps f64)
    (local.set $B1 (f64x2.splat (local.get $b1))) (local.set $OB1 (f64x2.splat (local.get $ob1)))
    (local.set $B2 (f64x2.splat (local.get $b2))) (local.set $OB2 (f64x2.splat (local.get $ob2)))
    (local.set $BC1 (f64x2.splat (local.get $bc1))) (local.set $BC2 (f64x2.splat (local.get $bc2)))
    (local.set $EPS (f64x2.splat (local.get $eps))) (local.set $STEP (f64x2.splat (local.get $step)))
    (local.set $DEC (f64x2.splat (local.get $decay)))
    ;; four floats per iteration: bytes [0, end)
    (local.set $end (i32.shl (i32.and (local.get $n) (i32.const -4)) (i32.const 2)))
    (block $done (loop $loop
      (br_if $done (i32.ge_u (local.get $o) (local.get $end)))
      (local.set $gv (v128.load (i32.add (local.get $g) (local.get $o))))
      (local.set $mv (v128.load (i32.add (local.get $m) (local.get $o))))
      (local.set $vv (v128.load (i32.add (local.get $v) (local.get $o))))
      (local.set $pv (v128.load (i32.add (local.get $p) (local.get $o))))
      ;; lanes 0 and 1
      (local.set $g2 (f64x2.promote_low_f32x4 (local.get $gv)))
      (local.set $m2 (f64x2.add (f64x2.mul (local.get $B1) (f64x2.promote_low_f32x4 (local.get $mv))) (f64x2.mul (local.get $OB1) (local.get $g2))))
      (local.set $v2 (f64x2.add (f64x2.mul (local.get $B2) (f64x2.promote_low_f32x4 (local.get $vv))) (f64x2.mul (f64x2.mul (local.get $OB2) (local.get $g2)) (local.get $g2))))
      (local.set $p2 (f64x2.promote_low_f32x4 (local.get $pv)))
      (local.set $p2 (f64x2.sub
        (f64x2.sub (local.get $p2) (f64x2.mul (local.get $STEP)
          (f64x2.div (f64x2.div (local.get $m2) (local.get $BC1)) (f64x2.add (f64x2.sqrt (f64x2.div (local.get $v2) (local.get $BC2))) (local.get $EPS)))))
        (f64x2.mul (local.get $DEC) (local.get $p2))))
      (local.set $mlo (f32x4.demote_f64x2_zero (local.get $m2)))
      (local.set $vlo (f32x4.demote_f64x2_zero (local.get $v2)))
      (local.set $plo (f32x4.demote_f64x2_zero (local.get $p2)))
      ;; lanes 2 and 3, moved down
      (local.set $g2 (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $gv) (local.get $gv))))
      (local.set $m2 (f64x2.add (f64x2.mul (local.get $B1) (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $mv) (local.get $mv)))) (f64x2.mul (local.get $OB1) (local.get $g2))))
      (local.set $v2 (f64x2.add (f64x2.mul (local.get $B2) (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $vv) (local.get $vv)))) (f64x2.mul (f64x2.mul (local.get $OB2) (local.get $g2)) (local.get $g2))))
      (local.set $p2 (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $pv) (local.get $pv))))
      (local.set $p2 (f64x2.sub
        (f64x2.sub (local.get $p2) (f64x2.mul (local.get $STEP)
          (f64x2.div (f64x2.div (local.get $m2) (local.get $BC1)) (f64x2.add (f64x2.sqrt (f64x2.div (local.get $v2) (local.get $BC2))) (local.get $EPS)))))
        (f64x2.mul (local.get $DEC) (local.get $p2))))
      ;; lanes 0-1 from the first half, 2-3 from this one
      (v128.store (i32.add (local.get $m) (local.get $o)) (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23 (local.get $mlo) (f32x4.demote_f64x2_zero (local.get $m2))))
      (v128.store (i32.add (local.get $v) (local.get $o)) (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23 (local.get $vlo) (f32x4.demote_f64x2_zero (local.get $v2))))
      (v128.store (i32.add (local.get $p) (local.get $o)) (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23 (local.get $plo) (f32x4.demote_f64x2_zero (local.get $p2))))
      (local.set $o (i32.add (local.get $o) (i32.const 16)))
      (br $loop)))
    ;; the last n mod 4 floats, one at a time, with the same arithmetic
    (local.set $end (i32.shl (local.get $n) (i32.const 2)))
    (block $tdone (loop $tloop
      (br_if $tdone (i32.ge_u (local.get $o) (local.get $end)))
      (local.set $gs (f64.promote_f32 (f32.load (i32.add (local.get $g) (local.get $o)))))
      (local.set $ms (f64.add (f64.mul (local.get $b1) (f64.promote_f32 (f32.load (i32.add (local.get $m) (local.get $o))))) (f64.mul (local.get $ob1) (local.get $gs))))
      (local.set $vs (f64.add (f64.mul (local.get $b2) (f64.promote_f32 (f32.load (i32.add (local.get $v) (local.get $o))))) (f64.mul (f64.mul (local.get $ob2) (local.get $gs)) (local.get $gs))))
      (local.set $ps (f64.promote_f32 (f32.load (i32.add (local.get $p) (local.get $o)))))
      (local.set $ps (f64.sub
        (f64.sub (local.get $ps) (f64.mul (local.get $step)
          (f64.div (f64.div (local.get $ms) (local.get $bc1)) (f64.add (f64.sqrt (f64.div (local.get $vs) (local.get $bc2))) (local.get $eps)))))
        (f64.mul (local.get $decay) (local.get $ps))))
      (f32.store (i32.add (local.get $m) (local.get $o)) (f32.demote_f64 (local.get $ms)))
      (f32.store (i32.add (local.get $v) (local.get $o)) (f32.demote_f64 (local.get $vs)))
      (f32.store (i32.add (local.get $p) (local.get $o)) (f32.demote_f64 (local.get $ps)))
      (local.set $o (i32.add (local.get $o) (i32.const 4)))
      (br $tloop))))
)
