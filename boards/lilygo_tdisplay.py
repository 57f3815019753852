"""LilyGO T-Display (ESP32): 1.14" ST7789 IPS panel used landscape (240x135), four buttons.

The buttons are wired from the header to ground: GPIO 32, 33, 25 and 26 are side by side on
the header, are none of the ESP32's strapping pins (0, 2, 5, 12, 15), are not used on the
board (the display takes 4, 5, 16, 18, 19 and 23, its own buttons 0 and 35, the battery
sense 14 and 34), and, unlike the input-only 36-39, have internal pull-ups. They are also
the DevKitC kiosk's button pins, so both kiosks take the same button harness.
"""

from micropython import const

NAME = "lilygo-tdisplay"
DISPLAY = "st7789"
WIDTH = const(240)
HEIGHT = const(135)
COLOUR = True
SPI_BUS = const(2)
SPI_BAUDRATE = const(40_000_000)
SPI_SCK = const(18)
SPI_MOSI = const(19)
LCD_CS = const(5)
LCD_DC = const(16)
LCD_RST = const(23)
LCD_BACKLIGHT = const(4)
# Landscape: MX|MV. The 135x240 glass shows memory columns 52..186 and rows 40..279 of the
# ST7789's 240x320, so the window starts at column 40 and, mirrored by MX, at row 53.
LCD_MADCTL = const(0x60)
LCD_X_OFFSET = const(40)
LCD_Y_OFFSET = const(53)
BAND_ROWS = const(15)  # 240 x 15 x 2 = 7 KB of band buffer, 9 bands a screen
# Left (very unhappy) to right (very happy): buttons to ground, internal pull-ups.
BUTTONS = (32, 33, 25, 26)
BUTTON_ACTIVE_LOW = True
LED = None
BUZZER = None


def make_display():
    """The initialised ST7789, on and black, with the backlight on."""
    # The drivers are firmware modules: on the kiosk they sit beside board.py in /lib.
    import st7789
    from machine import SPI, Pin

    # MISO would default to GPIO 19, which is MOSI here: the bus takes none.
    spi = SPI(SPI_BUS, SPI_BAUDRATE, sck=Pin(SPI_SCK), mosi=Pin(SPI_MOSI), miso=None)
    return st7789.ST7789(
        spi,
        Pin(LCD_CS, Pin.OUT, value=1),
        Pin(LCD_DC, Pin.OUT, value=0),
        Pin(LCD_RST, Pin.OUT, value=1),
        WIDTH,
        HEIGHT,
        LCD_X_OFFSET,
        LCD_Y_OFFSET,
        LCD_MADCTL,
        True,  # IPS glass: INVON
        BAND_ROWS,
        Pin(LCD_BACKLIGHT, Pin.OUT, value=0),
    )


def button_pins() -> tuple:
    """The buttons, left to right, as inputs with their pull-ups."""
    from machine import Pin

    return tuple(Pin(n, Pin.IN, Pin.PULL_UP) for n in BUTTONS)
