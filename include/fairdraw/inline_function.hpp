// InlineFunction: a move-only std::function for the callbacks of the draw path
// (the store's DrawCallback, the sink's Ack). libstdc++'s std::function keeps
// only 16 bytes inline, so a lambda holding `this` and a shared_ptr already cost
// a heap allocation per draw; here a callable of up to Capacity bytes lives in
// the object. A larger one (or one whose move may throw) goes to the heap, as
// with std::function, so every callable still fits: `stored_inline<F>` says
// which, for the hot paths that static_assert it.
#pragma once

#include <cstddef>
#include <functional>
#include <new>
#include <type_traits>
#include <utility>

namespace fairdraw {

template <class Signature, std::size_t Capacity>
class InlineFunction;

template <class R, class... Args, std::size_t Capacity>
class InlineFunction<R(Args...), Capacity> {
  static_assert(Capacity >= sizeof(void*), "room for the pointer of a heap-stored callable");

 public:
  template <class F>
  static constexpr bool stored_inline = sizeof(F) <= Capacity &&
                                        alignof(F) <= alignof(std::max_align_t) &&
                                        std::is_nothrow_move_constructible_v<F>;

  InlineFunction() noexcept = default;
  InlineFunction(std::nullptr_t) noexcept {}  // NOLINT(google-explicit-constructor): as std::function

  template <class F, class D = std::decay_t<F>,
            class = std::enable_if_t<!std::is_same_v<D, InlineFunction> &&
                                     std::is_invocable_r_v<R, D&, Args...>>>
  InlineFunction(F&& f) {  // NOLINT(google-explicit-constructor): a lambda converts, as to std::function
    if constexpr (stored_inline<D>) {
      ::new (static_cast<void*>(buffer_)) D(std::forward<F>(f));
    } else {
      ::new (static_cast<void*>(buffer_)) D*(new D(std::forward<F>(f)));
    }
    ops_ = &kOps<D>;
  }

  InlineFunction(InlineFunction&& other) noexcept { take(other); }
  InlineFunction& operator=(InlineFunction&& other) noexcept {
    if (this != &other) {
      reset();
      take(other);
    }
    return *this;
  }
  InlineFunction& operator=(std::nullptr_t) noexcept {
    reset();
    return *this;
  }
  InlineFunction(const InlineFunction&) = delete;
  InlineFunction& operator=(const InlineFunction&) = delete;
  ~InlineFunction() { reset(); }

  explicit operator bool() const noexcept { return ops_ != nullptr; }

  // Const as std::function's: a mutable lambda may change its own captures.
  R operator()(Args... args) const {
    if (ops_ == nullptr) throw std::bad_function_call();
    return ops_->invoke(buffer_, std::forward<Args>(args)...);
  }

 private:
  struct Ops {
    R (*invoke)(void* buffer, Args&&... args);
    void (*move)(void* from, void* to) noexcept;  // to is raw storage; from is left destroyed
    void (*destroy)(void* buffer) noexcept;
  };

  template <class D>
  static D& target(void* buffer) noexcept {
    if constexpr (stored_inline<D>) {
      return *std::launder(static_cast<D*>(buffer));
    } else {
      return **std::launder(static_cast<D**>(buffer));
    }
  }

  template <class D>
  static constexpr Ops kOps{
      [](void* buffer, Args&&... args) -> R {
        return std::invoke(target<D>(buffer), std::forward<Args>(args)...);
      },
      [](void* from, void* to) noexcept {
        if constexpr (stored_inline<D>) {
          D& f = target<D>(from);
          ::new (to) D(std::move(f));
          f.~D();
        } else {
          ::new (to) D*(*std::launder(static_cast<D**>(from)));
        }
      },
      [](void* buffer) noexcept {
        if constexpr (stored_inline<D>) {
          target<D>(buffer).~D();
        } else {
          delete &target<D>(buffer);
        }
      }};

  void take(InlineFunction& other) noexcept {
    if (other.ops_ == nullptr) return;
    other.ops_->move(other.buffer_, buffer_);
    ops_ = std::exchange(other.ops_, nullptr);
  }

  void reset() noexcept {
    if (ops_ == nullptr) return;
    std::exchange(ops_, nullptr)->destroy(buffer_);
  }

  alignas(std::max_align_t) mutable unsigned char buffer_[Capacity];
  const Ops* ops_ = nullptr;
};

}  // namespace fairdraw
