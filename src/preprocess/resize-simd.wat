;; SIMD kernels of the antialiased bilinear resampler (src/preprocess/resize.ts), for uint8 RGB
;; and int16 weights (the torch backend; precision <= 22 bits). Both compute, per output value,
;; floor((2^(shift-1) + sum_k w_k * x_k) / 2^shift) clamped to 0..255, in exact int32 arithmetic,
;; the same value as the JavaScript kernels. Weights come in pairs (two taps per i32x4.dot_i16x8_s);
;; an odd tap count ends with a zero weight whose pixel is read from padding the caller provides.
;; Built into resize-simd-bytes.ts by `npx tsx tools/build-wasm.ts` (wabt); tests/resize-simd.test.ts
;; checks that the committed bytes are this file's.
(module
  (memory (export "memory") 1)

  ;; Width pass over `rows` rows of `rowIn` bytes at `src` into rows of `wOut` RGB pixels at `out`.
  ;; start[i] (i32): byte offset of output i's first tap in its row; pairs[i] (i32): its tap pairs;
  ;; wts: per pair one v128 of int16 [k0 k1 k0 k1 k0 k1 0 0], outputs in order.
  ;; Writes 4 bytes per output (the 4th is overwritten by the next; the caller pads `out` by 4).
  (func (export "hpass")
    (param $src i32) (param $rows i32) (param $rowIn i32) (param $out i32) (param $wOut i32)
    (param $start i32) (param $pairs i32) (param $wts i32) (param $shift i32)
    (local $y i32) (local $i i32) (local $p i32) (local $n i32) (local $wp i32)
    (local $acc v128) (local $half v128)
    (local.set $half (i32x4.splat (i32.shl (i32.const 1) (i32.sub (local.get $shift) (i32.const 1)))))
    (block $yend (loop $yloop
      (br_if $yend (i32.ge_u (local.get $y) (local.get $rows)))
      (local.set $wp (local.get $wts))
      (local.set $i (i32.const 0))
      (block $iend (loop $iloop
        (br_if $iend (i32.ge_u (local.get $i) (local.get $wOut)))
        (local.set $p (i32.add (local.get $src) (i32.load (i32.add (local.get $start) (i32.shl (local.get $i) (i32.const 2))))))
        (local.set $n (i32.load (i32.add (local.get $pairs) (i32.shl (local.get $i) (i32.const 2)))))
        (local.set $acc (local.get $half))
        (block $kend (loop $kloop
          (br_if $kend (i32.eqz (local.get $n)))
          ;; bytes R0 G0 B0 R1 G1 B1 .. -> int16 [R0 R1 G0 G1 B0 B1 0 0]
          (local.set $acc (i32x4.add (local.get $acc)
            (i32x4.dot_i16x8_s
              (i8x16.shuffle 0 16 3 16 1 16 4 16 2 16 5 16 16 16 16 16
                (v128.load64_zero (local.get $p)) (v128.const i32x4 0 0 0 0))
              (v128.load (local.get $wp)))))
          (local.set $p (i32.add (local.get $p) (i32.const 6)))
          (local.set $wp (i32.add (local.get $wp) (i32.const 16)))
          (local.set $n (i32.sub (local.get $n) (i32.const 1)))
          (br $kloop)))
        ;; >> shift, saturate to int16 then to uint8 (the clamp to 0..255)
        (v128.store32_lane 0 (local.get $out)
          (i8x16.narrow_i16x8_u
            (i16x8.narrow_i32x4_s (i32x4.shr_s (local.get $acc) (local.get $shift)) (local.get $acc))
            (local.get $acc)))
        (local.set $out (i32.add (local.get $out) (i32.const 3)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $iloop)))
      (local.set $src (i32.add (local.get $src) (local.get $rowIn)))
      (local.set $y (i32.add (local.get $y) (i32.const 1)))
      (br $yloop))))

  ;; Height pass: `hOut` output rows of `rowLen` bytes at `out` from rows of `rowLen` bytes at `src`.
  ;; start[i] (i32): byte offset of output row i's first tap row from `src`; pairs[i] (i32): its
  ;; tap-row pairs; wts: per pair one v128 of int16 [k0 k1 k0 k1 k0 k1 k0 k1], rows in order.
  ;; Works 8 bytes of a row at a time: reads up to 7 bytes past a row and one row past the last
  ;; tap row (zero weight), and writes up to 7 bytes past a row (the caller pads both).
  (func (export "vpass")
    (param $src i32) (param $rowLen i32) (param $out i32) (param $hOut i32)
    (param $start i32) (param $pairs i32) (param $wts i32) (param $shift i32)
    (local $i i32) (local $j i32) (local $p i32) (local $n i32) (local $wp i32) (local $w0 i32)
    (local $v v128) (local $k v128) (local $a v128) (local $b v128) (local $half v128) (local $row i32)
    (local.set $half (i32x4.splat (i32.shl (i32.const 1) (i32.sub (local.get $shift) (i32.const 1)))))
    (local.set $w0 (local.get $wts))
    (block $iend (loop $iloop
      (br_if $iend (i32.ge_u (local.get $i) (local.get $hOut)))
      (local.set $row (i32.add (local.get $src) (i32.load (i32.add (local.get $start) (i32.shl (local.get $i) (i32.const 2))))))
      (local.set $j (i32.const 0))
      (block $jend (loop $jloop
        (br_if $jend (i32.ge_u (local.get $j) (local.get $rowLen)))
        (local.set $p (i32.add (local.get $row) (local.get $j)))
        (local.set $n (i32.load (i32.add (local.get $pairs) (i32.shl (local.get $i) (i32.const 2)))))
        (local.set $wp (local.get $w0))
        (local.set $a (local.get $half))
        (local.set $b (local.get $half))
        (block $kend (loop $kloop
          (br_if $kend (i32.eqz (local.get $n)))
          ;; 8 bytes of row y and of row y+1 interleaved: a0 b0 a1 b1 .. a7 b7
          (local.set $v (i8x16.shuffle 0 16 1 17 2 18 3 19 4 20 5 21 6 22 7 23
            (v128.load64_zero (local.get $p))
            (v128.load64_zero (i32.add (local.get $p) (local.get $rowLen)))))
          (local.set $k (v128.load (local.get $wp)))
          (local.set $a (i32x4.add (local.get $a) (i32x4.dot_i16x8_s (i16x8.extend_low_i8x16_u (local.get $v)) (local.get $k))))
          (local.set $b (i32x4.add (local.get $b) (i32x4.dot_i16x8_s (i16x8.extend_high_i8x16_u (local.get $v)) (local.get $k))))
          (local.set $p (i32.add (local.get $p) (i32.shl (local.get $rowLen) (i32.const 1))))
          (local.set $wp (i32.add (local.get $wp) (i32.const 16)))
          (local.set $n (i32.sub (local.get $n) (i32.const 1)))
          (br $kloop)))
        (v128.store64_lane 0 (i32.add (local.get $out) (local.get $j))
          (i8x16.narrow_i16x8_u
            (i16x8.narrow_i32x4_s (i32x4.shr_s (local.get $a) (local.get $shift)) (i32x4.shr_s (local.get $b) (local.get $shift)))
            (local.get $a)))
        (local.set $j (i32.add (local.get $j) (i32.const 8)))
        (br $jloop)))
      (local.set $w0 (local.get $wp))
      (local.set $out (i32.add (local.get $out) (local.get $rowLen)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $iloop))))
)
